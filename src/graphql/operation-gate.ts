import { createRequire } from 'node:module';
import { maxAliasesRule } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthRule } from '@escape.tech/graphql-armor-max-depth';
import { maxDirectivesRule } from '@escape.tech/graphql-armor-max-directives';
import {
  getOperationAST, getVariableValues, GraphQLError, Kind, NoSchemaIntrospectionCustomRule, parse, specifiedRules, TypeInfo, validate,
  ValidationContext,
  type DocumentNode, type FragmentDefinitionNode, type GraphQLSchema, type OperationDefinitionNode, type SelectionSetNode,
  type ValidationRule,
} from 'graphql';
import { ErrorCode } from '../errors.js';

// Loaded through require so that it shares our copy of `graphql` (it ships CommonJS only).
const require = createRequire(import.meta.url);
const { getComplexity, fieldExtensionsEstimator, simpleEstimator } =
  require('graphql-query-complexity') as typeof import('graphql-query-complexity');

export interface GateLimits {
  maxDepth: number;
  maxCost: number;
  /** Off in production: introspection is refused and errors stop suggesting field names. */
  introspection: boolean;
}

/** What a client sends: the same on HTTP and graphql-ws. */
export interface OperationRequest {
  query?: unknown;
  operationName?: string | null;
  variables?: Record<string, unknown> | null;
}

export type Admission =
  | { document: DocumentNode; operation: OperationDefinitionNode }
  | { errors: GraphQLError[] };

/**
 * Parser tokens a document may have; the parser stops at once past it. GraphiQL's introspection
 * query has about 350; lexing 20,000 took up to 30 ms here.
 */
export const MAX_TOKENS = 10_000;
const MAX_ALIASES = 100;
const MAX_DIRECTIVES = 50;
/**
 * Most selections of one response name in one selection set. graphql-js compares every pair of
 * them (OverlappingFieldsCanBeMergedRule): 4,000 copies of `me { id }` took over 100 ms to validate.
 */
const MAX_REPEATED_FIELD = 20;
/** Mutations that cost argon2 work and need no sign-in: one per request (they are rate limited per client too). */
export const SIGN_IN_MUTATIONS = new Set(['register', 'login', 'refreshToken']);
const DOCUMENTS_KEPT = 100;
const MAX_KEPT_QUERY_LENGTH = 10_000;
const VERDICTS_PER_DOCUMENT = 50;
const MAX_VERDICT_KEY_LENGTH = 2_000;

/**
 * Decides, before anything runs, whether an operation may be executed: the same checks and the
 * same answers on HTTP and graphql-ws. Hostile documents are refused in time linear in their size:
 *
 * 1. parse, stopping at MAX_TOKENS;
 * 2. structural limits that memoize each fragment (GraphQL Armor's depth, alias and directive rules,
 *    and a field count that is a lower bound of the cost), before graphql-js's validation, some of
 *    whose rules are quadratic in repeated fields;
 * 3. validation (introspection refused when it is off);
 * 4. the cost with the variables, priced by graphql-query-complexity with the schema's own field
 *    complexities; a document it cannot price is refused, never let through.
 *
 * Documents that pass steps 1–3 are kept by text, and each cost verdict by variables, so that
 * thousands of subscribers sending one subscription are judged once.
 */
export class OperationGate {
  private readonly documents = new Map<string, DocumentNode>();
  private readonly verdicts = new WeakMap<DocumentNode, Map<string, GraphQLError | null>>();
  private readonly validationRules: readonly ValidationRule[];

  constructor(readonly schema: GraphQLSchema, private readonly limits: GateLimits) {
    this.validationRules = limits.introspection ? specifiedRules : [...specifiedRules, NoSchemaIntrospectionCustomRule];
  }

  get hidesSchema(): boolean {
    return !this.limits.introspection;
  }

  admit(request: OperationRequest, transport: { subscriptions: boolean }): Admission {
    if (typeof request.query !== 'string' || request.query.trim() === '') {
      return refuse('The request has no GraphQL query.', 'BAD_REQUEST');
    }
    const known = this.document(request.query);
    if ('errors' in known) return known;
    const { document } = known;
    const operation = getOperationAST(document, request.operationName ?? undefined);
    if (!operation) {
      return refuse(request.operationName
        ? `The document has no operation named "${request.operationName}".`
        : 'The document has several operations: say which one to run with operationName.', 'OPERATION_RESOLUTION_FAILURE');
    }
    if (operation.operation === 'subscription' && !transport.subscriptions) {
      return refuse('Subscriptions are served over graphql-ws on this same path (ws://…/graphql), not over HTTP.', 'BAD_REQUEST');
    }
    const verdict = this.verdict(document, operation, request.variables ?? {});
    return verdict ? { errors: [verdict] } : { document, operation };
  }

  /** Steps 1–3, remembered by text (least recently used dropped first). */
  private document(query: string): { document: DocumentNode } | { errors: GraphQLError[] } {
    const cached = this.documents.get(query);
    if (cached) {
      this.documents.delete(query);
      this.documents.set(query, cached);
      return { document: cached };
    }
    let document: DocumentNode;
    try {
      document = parse(query, { maxTokens: MAX_TOKENS });
    } catch (error) {
      return { errors: [withCode(error as GraphQLError, 'GRAPHQL_PARSE_FAILED')] };
    }
    const tooLarge = this.structuralLimit(document);
    if (tooLarge) return { errors: [tooLarge] };
    const invalid = validate(this.schema, document, this.validationRules);
    if (invalid.length > 0) return { errors: invalid.map((error) => withCode(error, 'GRAPHQL_VALIDATION_FAILED')) };
    if (query.length <= MAX_KEPT_QUERY_LENGTH) {
      if (this.documents.size >= DOCUMENTS_KEPT) this.documents.delete(this.documents.keys().next().value!);
      this.documents.set(query, document);
    }
    return { document };
  }

  private structuralLimit(document: DocumentNode): GraphQLError | undefined {
    const operations = document.definitions.filter((d): d is OperationDefinitionNode => d.kind === Kind.OPERATION_DEFINITION);
    const found: GraphQLError[] = [];
    const armor = (reason: string) => ({
      propagateOnRejection: false,
      onReject: [(_context: unknown, error: GraphQLError) => {
        found.push(limitError(error.message.replace(/^Syntax Error: /, ''), reason));
      }],
    });
    // Armor's rules judge each operation when it is entered, from the fragments they look up
    // themselves: they are called for each operation directly, without the TypeInfo traversal of
    // the whole document that graphql-js's validate() makes (20 ms for a 60 KB document here).
    const context = new ValidationContext(this.schema, document, new TypeInfo(this.schema), () => undefined);
    for (const rule of [
      maxDepthRule({ n: this.limits.maxDepth, flattenFragments: true, ...armor('QUERY_TOO_DEEP') }),
      maxAliasesRule({ n: MAX_ALIASES, ...armor('TOO_MANY_ALIASES') }),
      maxDirectivesRule({ n: MAX_DIRECTIVES, ...armor('TOO_MANY_DIRECTIVES') }),
    ]) {
      const visitor = rule(context) as unknown as { OperationDefinition: { enter(this: unknown, node: OperationDefinitionNode): void } };
      for (const operation of operations) visitor.OperationDefinition.enter.call(visitor, operation);
      if (found.length > 0) return found[0];
    }
    for (const definition of operations) {
      const { fields, repeats } = new SelectionCount(document, this.limits.maxCost).of(definition.selectionSet);
      if (fields > this.limits.maxCost) {
        return limitError(`The query selects more than ${this.limits.maxCost} fields, so it costs more than the limit of ` +
          `${this.limits.maxCost}. Ask for fewer fields or smaller pages.`, 'QUERY_TOO_COSTLY');
      }
      if (repeats > MAX_REPEATED_FIELD) {
        return limitError(`The query selects one field ${repeats} times in one place; at most ${MAX_REPEATED_FIELD} are allowed.`,
          'TOO_MANY_REPEATED_FIELDS');
      }
    }
    return undefined;
  }

  /** Step 4 and the one-sign-in rule, for one operation and its variables. */
  private verdict(document: DocumentNode, operation: OperationDefinitionNode, given: Record<string, unknown>): GraphQLError | null {
    // Variables the operation does not declare are ignored by graphql-js, so they are here too.
    const variables = Object.fromEntries((operation.variableDefinitions ?? [])
      .filter(({ variable }) => Object.hasOwn(given, variable.name.value))
      .map(({ variable }) => [variable.name.value, given[variable.name.value]]));
    const key = JSON.stringify([operation.name?.value ?? null, variables]);
    const kept = key.length <= MAX_VERDICT_KEY_LENGTH ? this.verdicts.get(document)?.get(key) : undefined;
    if (kept !== undefined) return kept;
    const verdict = this.judge(document, operation, variables);
    if (key.length <= MAX_VERDICT_KEY_LENGTH) {
      let byKey = this.verdicts.get(document);
      if (!byKey) this.verdicts.set(document, (byKey = new Map()));
      if (byKey.size >= VERDICTS_PER_DOCUMENT) byKey.delete(byKey.keys().next().value!);
      byKey.set(key, verdict);
    }
    return verdict;
  }

  private judge(document: DocumentNode, operation: OperationDefinitionNode, variables: Record<string, unknown>): GraphQLError | null {
    if (operation.operation === 'mutation' && signInFields(fragmentsOf(document), operation.selectionSet) > 1) {
      return limitError(`A request may run one of ${[...SIGN_IN_MUTATIONS].join(', ')} at a time.`, 'ONE_SIGN_IN_PER_REQUEST');
    }
    const coerced = getVariableValues(this.schema, operation.variableDefinitions ?? [], variables, { maxErrors: 10 });
    if (coerced.errors) return withCode(coerced.errors[0]!, ErrorCode.BAD_USER_INPUT, 400);
    let cost: number;
    try {
      cost = getComplexity({
        schema: this.schema,
        query: document,
        operationName: operation.name?.value,
        variables,
        estimators: [fieldExtensionsEstimator(), simpleEstimator({ defaultComplexity: 1 })],
      });
    } catch {
      // It gives up past 10,000 nodes, for instance: what cannot be priced does not run.
      return limitError(`The query is too large to price; the cost limit is ${this.limits.maxCost}.`, 'QUERY_TOO_COSTLY');
    }
    if (cost > this.limits.maxCost) {
      return limitError(`The query costs ${cost}; the limit is ${this.limits.maxCost}. Ask for fewer fields or smaller pages.`,
        'QUERY_TOO_COSTLY');
    }
    return null;
  }
}

/**
 * Counts an operation's fields as if its fragments were written out (each field costs at least 1,
 * so this is a lower bound of the cost) and the most selections of one response name in one
 * selection set. Each fragment is measured once, and counting stops once `budget` is passed, so
 * the work is linear in the document's size however its fragments fan out.
 */
class SelectionCount {
  private readonly fragments: Map<string, FragmentDefinitionNode>;
  private readonly measured = new Map<string, Measure>();

  constructor(document: DocumentNode, private readonly budget: number) {
    this.fragments = fragmentsOf(document);
  }

  of(selectionSet: SelectionSetNode): Measure {
    try {
      return this.measure(selectionSet);
    } catch (error) {
      if (error === OVER_BUDGET) return { fields: Number.POSITIVE_INFINITY, repeats: 0, names: new Map() };
      throw error;
    }
  }

  private measure(selectionSet: SelectionSetNode): Measure {
    const names = new Map<string, number>();
    const total: Measure = { fields: 0, repeats: 0, names };
    const countName = (name: string, times: number) => {
      const count = (names.get(name) ?? 0) + times;
      names.set(name, count);
      total.repeats = Math.max(total.repeats, count);
    };
    const merge = (part: Measure) => {
      total.fields += part.fields;
      total.repeats = Math.max(total.repeats, part.repeats);
      if (total.fields > this.budget) throw OVER_BUDGET;
      for (const [name, times] of part.names) countName(name, times);
    };
    for (const selection of selectionSet.selections) {
      if (selection.kind === Kind.FIELD) {
        countName(selection.alias?.value ?? selection.name.value, 1);
        const below = selection.selectionSet ? this.measure(selection.selectionSet) : undefined;
        merge({ fields: 1 + (below?.fields ?? 0), repeats: below?.repeats ?? 0, names: NO_NAMES });
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        merge(this.measure(selection.selectionSet));
      } else {
        merge(this.fragment(selection.name.value));
      }
    }
    return total;
  }

  private fragment(name: string): Measure {
    const known = this.measured.get(name);
    if (known) return known;
    // Unknown fragments and cycles count nothing here: validation refuses both.
    this.measured.set(name, EMPTY);
    const definition = this.fragments.get(name);
    const measure = definition ? this.measure(definition.selectionSet) : EMPTY;
    this.measured.set(name, measure);
    return measure;
  }
}

interface Measure { fields: number; repeats: number; names: ReadonlyMap<string, number> }
const NO_NAMES: ReadonlyMap<string, number> = new Map();
const EMPTY: Measure = { fields: 0, repeats: 0, names: NO_NAMES };
const OVER_BUDGET = Symbol('over budget');

function fragmentsOf(document: DocumentNode): Map<string, FragmentDefinitionNode> {
  return new Map(document.definitions
    .filter((d): d is FragmentDefinitionNode => d.kind === Kind.FRAGMENT_DEFINITION)
    .map((d) => [d.name.value, d]));
}

/** How many sign-in mutations a mutation selects at its root, through fragments (each fragment once). */
function signInFields(fragments: Map<string, FragmentDefinitionNode>, selectionSet: SelectionSetNode, seen = new Set<string>()): number {
  let count = 0;
  for (const selection of selectionSet.selections) {
    if (selection.kind === Kind.FIELD) count += SIGN_IN_MUTATIONS.has(selection.name.value) ? 1 : 0;
    else if (selection.kind === Kind.INLINE_FRAGMENT) count += signInFields(fragments, selection.selectionSet, seen);
    else if (!seen.has(selection.name.value)) {
      seen.add(selection.name.value);
      const fragment = fragments.get(selection.name.value);
      if (fragment) count += signInFields(fragments, fragment.selectionSet, seen);
    }
  }
  return count;
}

function refuse(message: string, code: string): { errors: GraphQLError[] } {
  return { errors: [new GraphQLError(message, { extensions: { code, http: { status: 400 } } })] };
}

function limitError(message: string, reason: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code: ErrorCode.BAD_USER_INPUT, reason, http: { status: 400 } } });
}

function withCode(error: GraphQLError, code: string, status = 400): GraphQLError {
  return new GraphQLError(error.message, {
    nodes: error.nodes, source: error.source, positions: error.positions, path: error.path,
    extensions: { ...error.extensions, code, http: { status } },
  });
}
