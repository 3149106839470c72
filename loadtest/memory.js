// Text memories, no vectors: ramp from 10 to 50 VUs as seed.js does; each iteration
// remembers one ~20-word memory, then recalls by text twice (KEYWORD or AUTO, then
// KEYWORD filtered by metadata), then pauses 1 s. Thresholds: p95 < 200 ms for remember
// and for each recall, under 1% errors, every check held.
//
//   GRAPHQL_URL=http://127.0.0.1:8000/graphql k6 run loadtest/memory.js
//
// RAMP (default 1m: 10 -> MAX_VUS), HOLD (default 1m at MAX_VUS), MAX_VUS (default 50),
// P95_MS (default 200) and SEED_MEMORIES (default 1000, remembered in batches of 100
// before the ramp, as RememberSeed) tune it. With no EMBEDDER, AUTO recall by text is
// KEYWORD; with one, it is HYBRID and the embedder is measured too.

import { check, sleep } from 'k6';
import exec from 'k6/execution';
import { TREND_STATS, USERS, envInt, envStr, gql, idBase, rng } from './lib/graphql.js';

export const REMEMBER = `mutation Remember($memories: [MemoryInput!]!, $collection: String) {
  remember(memories: $memories, collection: $collection) { ids }
}`;

// The seed's batches, named apart so that the thresholds on Remember judge the load alone.
const REMEMBER_SEED = REMEMBER.replace('mutation Remember(', 'mutation RememberSeed(');

export const RECALL_TEXT = `query RecallText($text: String!, $mode: RecallMode!,
    $limit: Int! = 10, $collection: String) {
  recall(text: $text, mode: $mode, limit: $limit, collection: $collection) { id score }
}`;

export const RECALL_FILTERED = `query RecallTextFiltered($text: String!, $user: JSON!,
    $limit: Int! = 10, $collection: String) {
  recall(text: $text, mode: KEYWORD, limit: $limit, collection: $collection,
         filter: {must: [{key: "user", match: {value: $user}}],
                  mustNot: [{key: "source", match: {any: ["mail"]}}]}) {
    id score metadata
  }
}`;

// 200 words: each memory draws 20 of them, so every query word matches many memories.
const WORDS = (
  'tea coffee morning evening flight train hotel meeting project deadline budget report ' +
  'doctor dentist birthday anniversary gift dinner lunch breakfast recipe garden music ' +
  'concert ticket movie book novel author chapter library school teacher student exam ' +
  'holiday beach mountain river lake forest city village museum gallery painting photo ' +
  'camera phone laptop password email message letter parcel delivery address street ' +
  'apartment house kitchen bedroom window door key car bicycle bus airport passport visa ' +
  'language french german spanish italian japanese chinese lesson course workshop ' +
  'conference talk slides demo customer client partner contract invoice payment bank ' +
  'account salary tax insurance policy claim hospital medicine allergy vegetarian vegan ' +
  'cheese bread wine beer juice water coffee sugar salt pepper chocolate cake fruit apple ' +
  'banana orange lemon strawberry tomato potato rice pasta pizza soup salad fish chicken ' +
  'beef running swimming cycling hiking yoga tennis football basketball chess piano guitar ' +
  'violin singing dancing drawing writing reading cooking baking gardening knitting ' +
  'sister brother mother father daughter son friend neighbour colleague manager team ' +
  'office remote monday tuesday wednesday thursday friday saturday sunday january march ' +
  'april june july september october december spring summer autumn winter rain snow sun'
).split(' ');

export function text(random, words) {
  const picked = [];
  for (let i = 0; i < (words || 20); i++) {
    picked.push(WORDS[Math.floor(random() * WORDS.length)]);
  }
  return picked.join(' ');
}

export function memory(id, random) {
  return {
    id,
    text: text(random, 20),
    metadata: { user: `user-${id % USERS}`, source: id % 3 === 0 ? 'mail' : 'chat', n: id },
  };
}

const SEED_MEMORIES = envInt('SEED_MEMORIES', 1000);
const MAX_VUS = envInt('MAX_VUS', 50);
const P95 = `p(95)<${envInt('P95_MS', 200)}`;

export const options = {
  scenarios: {
    memory: {
      executor: 'ramping-vus',
      startVUs: Math.min(10, MAX_VUS),
      stages: [
        { duration: envStr('RAMP', '1m'), target: MAX_VUS },
        { duration: envStr('HOLD', '1m'), target: MAX_VUS },
      ],
      gracefulRampDown: '5s',
    },
  },
  thresholds: {
    'http_req_duration{operation:Remember}': [P95],
    'http_req_duration{operation:RecallText}': [P95],
    'http_req_duration{operation:RecallTextFiltered}': [P95],
    http_req_failed: ['rate<0.01'],
    graphql_errors: ['rate<0.01'],
    checks: ['rate>0.99'],
  },
  summaryTrendStats: TREND_STATS,
  setupTimeout: '120s',
};

// Memories to recall from the first iteration on; ids 0..SEED_MEMORIES-1, none a VU uses.
export function setup() {
  const random = rng(4242);
  for (let start = 0; start < SEED_MEMORIES; start += 100) {
    const memories = [];
    for (let id = start; id < Math.min(start + 100, SEED_MEMORIES); id++) {
      memories.push(memory(id, random));
    }
    gql('RememberSeed', REMEMBER_SEED, { memories }, '120s');
  }
}

export default function () {
  const vu = exec.vu.idInTest;
  const iteration = exec.vu.iterationInScenario;
  const random = rng(vu * 7919 + iteration);
  const id = idBase(vu) + iteration;

  const remembered = gql('Remember', REMEMBER, { memories: [memory(id, random)] });
  check(remembered, {
    'remember: 1 id': (b) => b && b.data && b.data.remember.ids.length === 1,
  });

  const mode = iteration % 2 === 0 ? 'KEYWORD' : 'AUTO';
  const hits = gql('RecallText', RECALL_TEXT, { text: text(random, 3), mode, limit: 10 });
  check(hits, { 'recall: hits': (b) => b && b.data && b.data.recall.length > 0 });

  const user = `user-${(vu + iteration) % USERS}`;
  const filtered = gql('RecallTextFiltered', RECALL_FILTERED, {
    text: text(random, 3),
    user,
    limit: 10,
  });
  check(filtered, {
    'recall filtered: only the user, no mail': (b) =>
      b &&
      b.data &&
      b.data.recall.every((m) => m.metadata.user === user && m.metadata.source !== 'mail'),
  });

  sleep(1);
}
