// Smoke: a few VUs for a few seconds over every operation of the API, with thresholds.
// CI runs it against a real server (tests/loadtest/test_smoke.py).
//
//   GRAPHQL_URL=http://127.0.0.1:8000/graphql VECTOR_SIZE=384 k6 run loadtest/smoke.js
//
// VUS (default 3) and DURATION (default 5s) tune it.

import { check } from 'k6';
import exec from 'k6/execution';
import {
  COLLECTIONS,
  COUNT,
  CREATE_COLLECTION,
  DELETE,
  DELETE_COLLECTION,
  DIMENSION,
  HEALTH,
  POINTS,
  RECALL,
  RECALL_FILTERED,
  SCROLL,
  TREND_STATS,
  UPSERT,
  envInt,
  envStr,
  gql,
  idBase,
  point,
  rng,
  vector,
} from './lib/graphql.js';

const OPERATIONS = [
  'Upsert',
  'Recall',
  'RecallFiltered',
  'Health',
  'Points',
  'Count',
  'Scroll',
  'Delete',
  'Collections',
  'CreateCollection',
  'DeleteCollection',
];

const thresholds = {
  graphql_errors: ['rate==0'],
  http_req_failed: ['rate==0'],
  checks: ['rate==1'],
  http_req_duration: [`p(95)<${envInt('P95_MS', 500)}`],
};
// Every operation must have run (and been judged) at least once.
for (const operation of OPERATIONS) {
  thresholds[`graphql_errors{operation:${operation}}`] = ['rate==0'];
  thresholds[`http_reqs{operation:${operation}}`] = ['count>0'];
}

export const options = {
  scenarios: {
    smoke: {
      executor: 'constant-vus',
      vus: envInt('VUS', 3),
      duration: envStr('DURATION', '5s'),
    },
  },
  thresholds,
  summaryTrendStats: TREND_STATS,
};

export function setup() {
  const name = `k6_smoke_${Date.now()}`;
  const created = gql('CreateCollection', CREATE_COLLECTION, { name, dimension: DIMENSION });
  check(created, {
    'createCollection: empty': (b) => b && b.data && b.data.createCollection.pointsCount === 0,
  });
  return { collection: name };
}

export default function (data) {
  const vu = exec.vu.idInTest;
  const iteration = exec.vu.iterationInScenario;
  const random = rng(vu * 100003 + iteration);
  const base = idBase(vu) + iteration * 2;
  const points = [point(base, random), point(base + 1, random)];
  // Found by the filtered query: this user's, and not excluded by its mustNot.
  points[0].payload.user = `smoke-${vu}`;
  points[0].payload.meta.source = 'chat';

  const upserted = gql('Upsert', UPSERT, { points });
  check(upserted, { 'upsert: 2 points': (b) => b && b.data && b.data.upsert.upserted === 2 });

  const hits = gql('Recall', RECALL, { vector: points[0].vector, limit: 5 });
  check(hits, {
    'query: finds what was written': (b) =>
      b && b.data && b.data.query.length > 0 && b.data.query[0].id === String(base),
  });

  const filtered = gql('RecallFiltered', RECALL_FILTERED, {
    vector: vector(random),
    limit: 5,
    user: `smoke-${vu}`,
  });
  check(filtered, {
    'filtered query: only that user': (b) =>
      b && b.data && b.data.query.length > 0 &&
      b.data.query.every((hit) => hit.payload.user === `smoke-${vu}`),
  });

  const health = gql('Health', HEALTH);
  check(health, { 'health: OK': (b) => b && b.data && b.data.health.status === 'OK' });

  const got = gql('Points', POINTS, { ids: [String(base), String(base + 1)] });
  check(got, { 'points: both': (b) => b && b.data && b.data.points.length === 2 });

  const counted = gql('Count', COUNT, { user: `smoke-${vu}` });
  check(counted, { 'count: at least 1': (b) => b && b.data && b.data.count >= 1 });

  // Scroll cursors are opaque (README: tenancy): page on with the nextCursor returned.
  const first = gql('Scroll', SCROLL, { limit: 2, cursor: null });
  const next = first && first.data ? first.data.scroll.nextCursor : null;
  const page = gql('Scroll', SCROLL, { limit: 10, cursor: next });
  check(page, {
    'scroll: resumes after the first page': (b) =>
      b && b.data && next !== null && b.data.scroll.points.length > 0 &&
      !first.data.scroll.points.some((p) => p.id === b.data.scroll.points[0].id),
  });

  const deleted = gql('Delete', DELETE, { ids: [String(base + 1)] });
  check(deleted, { 'delete: 1 point': (b) => b && b.data && b.data.delete.deleted === 1 });

  const collections = gql('Collections', COLLECTIONS);
  check(collections, {
    'collections: lists the scratch collection': (b) =>
      b && b.data && b.data.collections.some((c) => c.name === data.collection),
  });
}

export function teardown(data) {
  const dropped = gql('DeleteCollection', DELETE_COLLECTION, { name: data.collection });
  check(dropped, { 'deleteCollection: true': (b) => b && b.data && b.data.deleteCollection });
}
