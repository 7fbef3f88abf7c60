/**
 * Rules: compiled once per config load, evaluated per connection without
 * allocating. See routes.ts for the walk, leaves.ts for each condition.
 */
export { compileRoutes, type CompiledRoutes, type Decision, type RouteGroup } from './routes.js';
export { compileCondition } from './compile.js';
export type { Predicate } from './leaves.js';
export { FAIL, MISS, PASS, type RouteFacts, type Tri } from './facts.js';
export { formatCondition } from './condition.js';
export { matchesEverything, matchesNothing, type ReachContext } from './reach.js';
