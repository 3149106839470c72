// Ingest-heavy: VUS virtual users upserting batches of BATCH points (default 100) as
// fast as the server takes them. The custom counter `vectors_upserted` counts what the
// server acknowledged; its rate is the ingest rate in vectors per second.
//
//   GRAPHQL_URL=http://127.0.0.1:8000/graphql VUS=4 BATCH=500 DURATION=1m k6 run loadtest/ingest_heavy.js
//
// The points go to a scratch collection made by setup() and deleted by teardown()
// (needs the admin scope when auth is on); set COLLECTION to write to one that exists
// instead (it is kept). Thresholds: at least MIN_RATE vectors/s (default 1000), p95 of
// an upsert under P95_MS (default 1000), under 1% errors.

import { check } from 'k6';
import exec from 'k6/execution';
import { Counter } from 'k6/metrics';
import {
  CREATE_COLLECTION,
  DELETE_COLLECTION,
  DIMENSION,
  TREND_STATS,
  envInt,
  envStr,
  gql,
  idBase,
  payload,
  postRaw,
  rng,
  vector,
} from './lib/graphql.js';

const BATCH = envInt('BATCH', 100);
const vectorsUpserted = new Counter('vectors_upserted');

export const options = {
  scenarios: {
    ingest: {
      executor: 'constant-vus',
      vus: envInt('VUS', 4),
      duration: envStr('DURATION', '1m'),
    },
  },
  thresholds: {
    vectors_upserted: [`rate>=${envInt('MIN_RATE', 1000)}`],
    'http_req_duration{operation:Upsert}': [`p(95)<${envInt('P95_MS', 1000)}`],
    http_req_failed: ['rate<0.01'],
    graphql_errors: ['rate<0.01'],
  },
  summaryTrendStats: TREND_STATS,
};

export function setup() {
  const given = envStr('COLLECTION', '');
  if (given) return { collection: given, scratch: false };
  const name = `k6_ingest_${Date.now()}`;
  gql('CreateCollection', CREATE_COLLECTION, { name, dimension: DIMENSION });
  return { collection: name, scratch: true };
}

export function teardown(data) {
  if (data.scratch) gql('DeleteCollection', DELETE_COLLECTION, { name: data.collection });
}

const UPSERT_DOC = JSON.stringify(
  'mutation Upsert($points: [PointInput!]!, $collection: String) ' +
    '{ upsert(points: $points, collection: $collection) { upserted } }',
);

// Vectors are serialised once per VU; each request only splices fresh ids in, so the
// load generator spends its CPU on sending, not on making JSON.
let vectors = null;

export default function (data) {
  if (vectors === null) {
    const random = rng(exec.vu.idInTest * 65537 + 7);
    vectors = [];
    for (let i = 0; i < Math.min(BATCH, 500); i++) vectors.push(JSON.stringify(vector(random)));
  }
  const base = idBase(exec.vu.idInTest) + exec.vu.iterationInScenario * BATCH;
  const parts = new Array(BATCH);
  for (let i = 0; i < BATCH; i++) {
    const id = base + i;
    parts[i] =
      `{"id":${id},"vector":${vectors[i % vectors.length]},` +
      `"payload":${JSON.stringify(payload(id))}}`;
  }
  const body =
    `{"query":${UPSERT_DOC},"operationName":"Upsert","variables":` +
    `{"collection":${JSON.stringify(data.collection)},"points":[${parts.join(',')}]}}`;
  const res = postRaw('Upsert', body, '120s');
  const upserted = res && res.data && res.data.upsert ? res.data.upsert.upserted : 0;
  vectorsUpserted.add(upserted);
  check(res, { [`upsert: ${BATCH} points`]: () => upserted === BATCH });
}
