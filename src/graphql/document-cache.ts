import { parse, validate, type DocumentNode, type GraphQLError, type GraphQLSchema } from 'graphql';

/**
 * Parsed and validated documents by query text, least recently used dropped first. Thousands of
 * graphql-ws subscribers usually send the same few queries: they share one document instead of
 * each parsing, validating and keeping its own copy.
 */
export class ValidDocumentCache {
  private readonly byText = new Map<string, DocumentNode>();

  constructor(
    private readonly schema: GraphQLSchema,
    private readonly options: { maxTokens: number; capacity: number; maxQueryLength: number },
  ) {}

  /** The document, or its validation errors; throws the parser's GraphQLError on bad syntax. */
  get(query: string): { document: DocumentNode } | { errors: readonly GraphQLError[] } {
    const cached = this.byText.get(query);
    if (cached) {
      this.byText.delete(query); // re-inserted as the most recently used
      this.byText.set(query, cached);
      return { document: cached };
    }
    const document = parse(query, { maxTokens: this.options.maxTokens });
    const errors = validate(this.schema, document);
    if (errors.length > 0) return { errors };
    // Huge query texts are rare and would make the cache itself large: they are not kept.
    if (query.length <= this.options.maxQueryLength) {
      if (this.byText.size >= this.options.capacity) this.byText.delete(this.byText.keys().next().value!);
      this.byText.set(query, document);
    }
    return { document };
  }
}
