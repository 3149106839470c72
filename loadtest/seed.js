// The seed's scenario, in GraphQL: ramp from 10 to 50 VUs; each iteration upserts a
// point and recalls its neighbours, then pauses 1 s. Thresholds as in the seed:
// p95 < 200 ms and under 1% errors.
//
//   GRAPHQL_URL=http://127.0.0.1:8000/graphql k6 run loadtest/seed.js
//
// RAMP (default 1m: 10 -> 50 VUs), HOLD (default 1m at 50) and VECTOR_SIZE tune it.

import { check, sleep } from 'k6';
import exec from 'k6/execution';
import {
  RECALL,
  TREND_STATS,
  UPSERT,
  envStr,
  gql,
  idBase,
  point,
  rng,
} from './lib/graphql.js';

export const options = {
  scenarios: {
    seed: {
      executor: 'ramping-vus',
      startVUs: 10,
      stages: [
        { duration: envStr('RAMP', '1m'), target: 50 },
        { duration: envStr('HOLD', '1m'), target: 50 },
      ],
      gracefulRampDown: '5s',
    },
  },
  thresholds: {
    http_req_duration: ['p(95)<200'],
    http_req_failed: ['rate<0.01'],
    graphql_errors: ['rate<0.01'],
  },
  summaryTrendStats: TREND_STATS,
};

export default function () {
  const vu = exec.vu.idInTest;
  const iteration = exec.vu.iterationInScenario;
  const random = rng(vu * 7919 + iteration);
  const memory = point(idBase(vu) + iteration, random);

  const upserted = gql('Upsert', UPSERT, { points: [memory] });
  check(upserted, { 'upsert: 1 point': (b) => b && b.data && b.data.upsert.upserted === 1 });

  const hits = gql('Recall', RECALL, { vector: memory.vector, limit: 10 });
  check(hits, { 'query: hits': (b) => b && b.data && b.data.query.length > 0 });

  sleep(1);
}
