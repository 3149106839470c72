// Query-heavy: VUS virtual users recalling as fast as the server answers, a third of
// the queries with a payload filter. setup() first writes SEED_POINTS points (default
// 10000; 0 to query what is there).
//
//   GRAPHQL_URL=http://127.0.0.1:8000/graphql VUS=20 DURATION=1m k6 run loadtest/query_heavy.js
//
// Thresholds: p95 < P95_MS (default 50) and p99 < P99_MS (default 100) per query kind,
// under 1% errors.

import { check } from 'k6';
import exec from 'k6/execution';
import {
  RECALL,
  RECALL_FILTERED,
  TREND_STATS,
  USERS,
  envInt,
  envStr,
  gql,
  seedPoints,
  vectorPool,
} from './lib/graphql.js';

const P95 = envInt('P95_MS', 50);
const P99 = envInt('P99_MS', 100);
const LIMIT = envInt('LIMIT', 10);

export const options = {
  scenarios: {
    queries: {
      executor: 'constant-vus',
      vus: envInt('VUS', 20),
      duration: envStr('DURATION', '1m'),
    },
  },
  setupTimeout: '10m',
  thresholds: {
    'http_req_duration{operation:Recall}': [`p(95)<${P95}`, `p(99)<${P99}`],
    'http_req_duration{operation:RecallFiltered}': [`p(95)<${P95}`, `p(99)<${P99}`],
    http_req_failed: ['rate<0.01'],
    graphql_errors: ['rate<0.01'],
  },
  summaryTrendStats: TREND_STATS,
};

export function setup() {
  seedPoints(envInt('SEED_POINTS', 10000), 500);
}

const nextVector = vectorPool(64, 1);

export default function () {
  const iteration = exec.vu.iterationInScenario;
  const v = nextVector();
  if (iteration % 3 === 2) {
    const res = gql('RecallFiltered', RECALL_FILTERED, {
      vector: v,
      limit: LIMIT,
      user: `user-${iteration % USERS}`,
    });
    check(res, { 'filtered query: answered': (b) => b && b.data && Array.isArray(b.data.query) });
  } else {
    const res = gql('Recall', RECALL, { vector: v, limit: LIMIT });
    check(res, { 'query: hits': (b) => b && b.data && b.data.query.length > 0 });
  }
}
