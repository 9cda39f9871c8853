// Plain JavaScript, so that test/hostile-documents.test.ts and bench/hostile-documents.mjs share it.

/**
 * Documents an attacker sends to stall a GraphQL server: each is small (at most the 1 MB body
 * limit) and each must be refused while costing Pollen next to nothing.
 */
const fanOut = (/** @type {number} */ levels, /** @type {string} */ leaf, on = 'Query') => {
  const fragments = [`fragment F0 on ${on} { ${leaf} }`];
  for (let i = 1; i <= levels; i++) fragments.push(`fragment F${i} on ${on} { ...F${i - 1} ...F${i - 1} }`);
  return `${on === 'Query' ? '' : 'mutation '}{ ...F${levels} } ${fragments.join(' ')}`;
};
const nested = (/** @type {number} */ levels) => `{ projects { edges { node { ${'apps { edges { node { project { '.repeat(levels)}id${' } } } }'.repeat(levels)} } } } }`;

/** @type {Array<{ name: string, query: string, variables?: Record<string, unknown>, operationName?: string }>} */
export const HOSTILE = [
  { name: 'fragments that double 27 times', query: fanOut(27, 'me { id }') },
  { name: 'fragments that double 40 times, fields first', query: `${fanOut(40, 'me { id username }').replace(/^\{ \.\.\.F40 \} /, '')} query Q { ...F40 }` },
  { name: 'fragments that double inside fields', query: (() => {
    const fragments = ['fragment G0 on Project { id }'];
    for (let i = 1; i <= 30; i++) fragments.push(`fragment G${i} on Project { apps { edges { node { project { ...G${i - 1} } } } } a${i}: apps { edges { node { project { ...G${i - 1} } } } } }`);
    return `{ projects { edges { node { ...G30 } } } } ${fragments.join(' ')}`;
  })() },
  { name: '2,100 aliases of a user', query: `{ ${Array.from({ length: 2100 }, (_, i) => `u${i}: me { id username email createdAt }`).join(' ')} }` },
  { name: '1,500 aliases', query: `{ ${Array.from({ length: 1500 }, (_, i) => `u${i}: me { id }`).join(' ')} }` },
  { name: 'one field 2,000 times', query: `{ ${'me { id } '.repeat(2000)} }` },
  { name: 'a field with a selection 400 times', query: `{ projects { ${'edges { node { id } } '.repeat(400)} } }` },
  { name: 'the same fragment pair 2,000 times', query: `{ ${'...A ...B '.repeat(2000)} } fragment A on Query { me { id } } fragment B on Query { me { username } }` },
  { name: '1,200 directives', query: `{ me ${'@include(if: true) '.repeat(1200)} { id } }` },
  { name: 'nesting 60 levels deep', query: nested(15) },
  { name: 'more tokens than the parser reads', query: `{ me { ${'id '.repeat(30_000)} } }` },
  { name: 'a fragment cycle', query: '{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }' },
  { name: '50 sign-ups in one request', query: `mutation { ${Array.from({ length: 50 }, (_, i) => `r${i}: register(input: { username: "flood${i}", email: "f${i}@example.com", password: "Pollen!2026" }) { accessToken }`).join(' ')} }` },
  { name: 'sign-ins fanned out through fragments', query: fanOut(20, 'login(input: { username: "x", password: "y" }) { accessToken }', 'Mutation') },
  { name: 'a 900 KB string', query: `{ project(id: "${'x'.repeat(900_000)}") { id } }` },
  { name: 'huge variables', query: 'query($id: ID!) { project(id: $id) { id } }', variables: { id: 'x', ...Object.fromEntries(Array.from({ length: 20_000 }, (_, i) => [`v${i}`, [i, { deep: [i] }]])) } },
  { name: 'a variable with 900 KB of nested input', query: 'mutation($input: CreateProjectInput!) { createProject(input: $input) { id } }', variables: { input: { name: 'x', description: 'd', extra: Array.from({ length: 40_000 }, (_, i) => ({ i })) } } },
];

