import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { InProcessPubSub } from '../pubsub/pubsub.js';
import { buildPollenSchema, printPollenSchema } from './schema.js';

/**
 * Writes schema.graphql from the code (`npm run schema`), or with --check exits 1 when the
 * file differs from what the code produces.
 */
const { values } = parseArgs({ options: { check: { type: 'boolean' }, file: { type: 'string' } } });
const file = values.file ?? fileURLToPath(new URL('../../schema.graphql', import.meta.url));
const fromCode = printPollenSchema(await buildPollenSchema(new InProcessPubSub()));

if (values.check) {
  const checkedIn = readFileSync(file, 'utf8');
  if (checkedIn !== fromCode) {
    console.error(`${file} differs from the schema the code produces: run "npm run schema" and commit it.`);
    process.exit(1);
  }
  console.log(`${file} matches the code`);
} else {
  writeFileSync(file, fromCode);
  console.log(`wrote ${file}`);
}
