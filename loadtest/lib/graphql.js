// Shared by every k6 script: where the server is, how a GraphQL request is sent and
// judged, the operations of the contract, and deterministic test data.
//
// GraphQL errors come back with HTTP 200, so k6's http_req_failed misses them: every
// request made here also adds to the `graphql_errors` rate (HTTP status other than
// 200, a body that is not JSON, or a non-empty `errors` list) and runs a check.
// Requests are tagged `operation` (and `name`, so k6 groups them by it too).

import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { Rate } from 'k6/metrics';

export const GRAPHQL_URL = __ENV.GRAPHQL_URL || 'http://127.0.0.1:8000/graphql';
export const TOKEN = __ENV.TOKEN || '';
export const DIMENSION = parseInt(__ENV.VECTOR_SIZE || '384', 10);

export const graphqlErrors = new Rate('graphql_errors');

const HEADERS = { 'Content-Type': 'application/json' };
if (TOKEN) {
  HEADERS.Authorization = `Bearer ${TOKEN}`;
}

// Sends a pre-serialised body; returns the decoded response body, or null.
export function postRaw(operation, body, timeout) {
  const res = http.post(GRAPHQL_URL, body, {
    headers: HEADERS,
    tags: { operation, name: operation },
    timeout: timeout || '30s',
  });
  let decoded = null;
  try {
    decoded = res.json();
  } catch (_) {
    decoded = null;
  }
  const failed =
    res.status !== 200 ||
    decoded === null ||
    typeof decoded !== 'object' ||
    (Array.isArray(decoded.errors) && decoded.errors.length > 0) ||
    !decoded.data;
  graphqlErrors.add(failed, { operation });
  check(
    res,
    { [`${operation}: no errors`]: () => !failed },
    { operation },
  );
  if (failed && __ENV.K6_DEBUG_ERRORS) {
    console.warn(`${operation}: HTTP ${res.status} ${String(res.body).slice(0, 300)}`);
  }
  return decoded;
}

export function gql(operation, query, variables, timeout) {
  return postRaw(operation, JSON.stringify({ query, variables, operationName: operation }), timeout);
}

// The contract's operations, each a named document with variables only: vectors sent
// as variables cost the server one scalar decode, not a parse of hundreds of literals.

export const UPSERT = `mutation Upsert($points: [PointInput!]!, $collection: String) {
  upsert(points: $points, collection: $collection) { upserted }
}`;

export const RECALL = `query Recall($vector: Vector!, $limit: Int! = 10, $collection: String) {
  query(vector: $vector, limit: $limit, collection: $collection) { id score payload }
}`;

export const RECALL_FILTERED = `query RecallFiltered($vector: Vector!, $limit: Int! = 10,
    $user: JSON!, $collection: String) {
  query(vector: $vector, limit: $limit, collection: $collection,
        filter: {must: [{key: "user", match: {value: $user}}],
                 mustNot: [{key: "meta.source", match: {any: ["mail"]}}]}) {
    id score payload
  }
}`;

export const HEALTH = `query Health { health { status version } }`;

export const POINTS = `query Points($ids: [ID!]!, $collection: String) {
  points(ids: $ids, collection: $collection) { id payload }
}`;

export const COUNT = `query Count($user: JSON!, $collection: String) {
  count(filter: {must: [{key: "user", match: {value: $user}}]}, collection: $collection)
}`;

export const SCROLL = `query Scroll($limit: Int!, $cursor: ID, $collection: String) {
  scroll(limit: $limit, cursor: $cursor, collection: $collection) {
    points { id payload } nextCursor
  }
}`;

export const DELETE = `mutation Delete($ids: [ID!]!, $collection: String) {
  delete(ids: $ids, collection: $collection) { deleted }
}`;

export const COLLECTIONS = `query Collections { collections { name dimension distance pointsCount } }`;

export const CREATE_COLLECTION = `mutation CreateCollection($name: String!, $dimension: Int!) {
  createCollection(name: $name, dimension: $dimension) { name dimension pointsCount }
}`;

export const DELETE_COLLECTION = `mutation DeleteCollection($name: String!) {
  deleteCollection(name: $name)
}`;

// Deterministic data: the same seed gives the same vectors on every run.

export function rng(seed) {
  let a = seed >>> 0;
  return function next() {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function vector(random, dimension) {
  const v = new Array(dimension || DIMENSION);
  for (let i = 0; i < v.length; i++) {
    v[i] = Math.round((random() * 2 - 1) * 1e4) / 1e4;
  }
  return v;
}

// Per VU, `size` query vectors made on first use from a seed unique to the VU, so the load
// generator's own work stays small; returns the vector for the current iteration.
export function vectorPool(size, salt) {
  const pool = [];
  return function next() {
    if (pool.length === 0) {
      const random = rng(exec.vu.idInTest * 31337 + salt);
      for (let i = 0; i < size; i++) pool.push(vector(random));
    }
    return pool[exec.vu.iterationInScenario % pool.length];
  };
}

export const USERS = 10;

export function payload(id) {
  return {
    user: `user-${id % USERS}`,
    text: `memory ${id}`,
    n: id,
    meta: { source: id % 3 === 0 ? 'mail' : 'chat' },
  };
}

export function point(id, random, dimension) {
  return { id, vector: vector(random, dimension), payload: payload(id) };
}

// Ids no other VU uses: VU n writes n * 10^9 + 0, 1, 2, ...
export function idBase(vuId) {
  return vuId * 1e9;
}

// Writes `count` points with ids 0..count-1 in batches, for the read-heavy scripts.
export function seedPoints(count, batch, collection) {
  const random = rng(12345);
  for (let start = 0; start < count; start += batch) {
    const points = [];
    for (let id = start; id < Math.min(start + batch, count); id++) {
      points.push(point(id, random));
    }
    gql('Upsert', UPSERT, { points, collection: collection || null }, '120s');
  }
}

export const TREND_STATS = ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)', 'count'];

export function envInt(name, fallback) {
  const raw = __ENV[name];
  return raw === undefined || raw === '' ? fallback : parseInt(raw, 10);
}

export function envStr(name, fallback) {
  const raw = __ENV[name];
  return raw === undefined || raw === '' ? fallback : raw;
}
