// Open model: queries arrive at a constant RATE per second (default 100) whether or
// not the server keeps up, as real clients do. Thresholds: p99 < P99_MS (default 50),
// under 1% errors, and under 1% of the arrivals dropped for want of a free VU. Raise
// RATE until a threshold breaks to find the highest rate held (README: Load testing).
//
//   GRAPHQL_URL=http://127.0.0.1:8000/graphql RATE=200 DURATION=30s k6 run loadtest/open_model.js
//
// SEED_POINTS (default 0) writes that many points first.

import { check } from 'k6';
import {
  RECALL,
  TREND_STATS,
  envInt,
  envStr,
  gql,
  seedPoints,
  vectorPool,
} from './lib/graphql.js';

const RATE = envInt('RATE', 100);
const DURATION = envStr('DURATION', '30s');

function seconds(duration) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(duration);
  if (!m) return 30;
  return parseFloat(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2]];
}

export const options = {
  scenarios: {
    arrivals: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: envInt('PRE_VUS', Math.max(10, Math.ceil(RATE / 20))),
      maxVUs: envInt('MAX_VUS', Math.max(50, Math.ceil(RATE / 4))),
    },
  },
  setupTimeout: '10m',
  thresholds: {
    'http_req_duration{operation:Recall}': [`p(99)<${envInt('P99_MS', 50)}`],
    http_req_failed: ['rate<0.01'],
    graphql_errors: ['rate<0.01'],
    dropped_iterations: [`count<=${Math.floor(RATE * seconds(DURATION) * 0.01)}`],
  },
  summaryTrendStats: TREND_STATS,
};

export function setup() {
  seedPoints(envInt('SEED_POINTS', 0), 500);
}

const nextVector = vectorPool(32, 3);

export default function () {
  const v = nextVector();
  const res = gql('Recall', RECALL, { vector: v, limit: envInt('LIMIT', 10) });
  check(res, { 'query: answered': (b) => b && b.data && Array.isArray(b.data.query) });
}
