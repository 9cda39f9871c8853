import { parse, TomlError, type TomlTableWithoutBigInt as TomlTable } from 'smol-toml';
import { invalidArchive, MiB, overLimit } from './errors.js';
import { describeRoot, type AppLayout } from './layout.js';
import type { ZipEntry } from './zip.js';

export type RunConfigValue = string | number | boolean;

/** What pyproject.toml says of the app. */
export interface AppMetadata {
  name: string;
  version: string;
  publisher: string | null;
  components: { serverapp: string; clientapp: string };
  /** [tool.flwr.app.config] with nested tables flattened into dotted keys, as Flower does. */
  runConfigDefaults: Record<string, RunConfigValue>;
}

const MAX_PYPROJECT_BYTES = MiB;
const COMPONENT_PATTERN = /^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$/;
const COMPONENTS_TABLE = 'tool.flwr.app.components';
const CONFIG_TABLE = 'tool.flwr.app.config';
/** Far deeper than any real run config, far shallower than the call stack (a.b.c... = 1 nests at will). */
const MAX_CONFIG_DEPTH = 64;

type ComponentRole = keyof AppMetadata['components'];

export function checkPyprojectSize(pyproject: ZipEntry): void {
  if (pyproject.uncompressedSize > MAX_PYPROJECT_BYTES) {
    throw badPyproject(`pyproject.toml is ${overLimit(pyproject.uncompressedSize, MAX_PYPROJECT_BYTES)}.`);
  }
}

export function parsePyproject(raw: Buffer): AppMetadata {
  const document = parseToml(decodePyproject(raw));
  const project = tableAt(document, 'project');
  const app = tableAt(document, 'tool.flwr.app');
  const components = tableAt(document, COMPONENTS_TABLE);
  const config = tableAt(document, CONFIG_TABLE);
  return {
    name: requiredString(project, 'project', 'name', 'myapp'),
    version: requiredString(project, 'project', 'version', '1.0.0'),
    publisher: optionalString(app, 'tool.flwr.app', 'publisher'),
    components: {
      serverapp: componentReference(components, 'serverapp'),
      clientapp: componentReference(components, 'clientapp'),
    },
    runConfigDefaults: Object.fromEntries(flattenRunConfig(config ?? {})),
  };
}

function decodePyproject(raw: Buffer): string {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(raw);
  } catch {
    throw badPyproject('pyproject.toml is not valid UTF-8 text.');
  }
  // smol-toml skips a byte order mark, but Flower's TOML reader (tomli) fails on it.
  if (text.startsWith('\uFEFF')) throw badPyproject('pyproject.toml starts with a byte order mark, which Flower cannot read: save it as UTF-8 without BOM.');
  return text;
}

function parseToml(text: string): TomlTable {
  try {
    // Integers stay numbers; one beyond Number.MAX_SAFE_INTEGER is a TomlError rather than a bigint.
    return parse(text, { integersAsBigInt: false });
  } catch (error) {
    if (!(error instanceof TomlError)) throw error;
    const problem = error.message.split('\n')[0].replace(/^Invalid TOML document: /, '').replace(/\.$/, '');
    throw badPyproject(`pyproject.toml line ${error.line}, column ${error.column}: ${problem}.`);
  }
}

function tableAt(document: TomlTable, dottedPath: string): TomlTable | undefined {
  let table = document;
  const keys = dottedPath.split('.');
  for (const [index, key] of keys.entries()) {
    const value = table[key];
    if (value === undefined) return undefined;
    if (!isTable(value)) throw badPyproject(`In pyproject.toml, ${keys.slice(0, index + 1).join('.')} must be a table.`);
    table = value;
  }
  return table;
}

function requiredString(table: TomlTable | undefined, tableName: string, key: string, example: string): string {
  const value = table?.[key];
  if (typeof value !== 'string' || value.trim() === '') {
    throw badPyproject(`pyproject.toml needs a non-empty string ${key} in [${tableName}], such as ${key} = "${example}"` +
      `${value === undefined ? '' : `; it has ${describeTomlValue(value)}`}.`);
  }
  return value;
}

function optionalString(table: TomlTable | undefined, tableName: string, key: string): string | null {
  const value = table?.[key];
  if (value === undefined) return null;
  if (typeof value !== 'string') throw badPyproject(`In pyproject.toml, [${tableName}] ${key} must be a string; it is ${describeTomlValue(value)}.`);
  return value;
}

function componentReference(components: TomlTable | undefined, role: ComponentRole): string {
  const reference = requiredString(components, COMPONENTS_TABLE, role, exampleComponent(role));
  if (!COMPONENT_PATTERN.test(reference)) {
    throw invalidArchive('BAD_COMPONENT', `[${COMPONENTS_TABLE}] ${role} = ${JSON.stringify(reference)} is not of the form ` +
      `module.path:attribute, such as "${exampleComponent(role)}".`);
  }
  return reference;
}

function exampleComponent(role: ComponentRole): string {
  return role === 'serverapp' ? 'myapp.server_app:app' : 'myapp.client_app:app';
}

/** Each component must name a module the archive holds. */
export function checkComponentModules(components: AppMetadata['components'], layout: AppLayout): void {
  const files = new Set(layout.files);
  for (const [role, reference] of Object.entries(components)) {
    const moduleName = reference.slice(0, reference.indexOf(':'));
    const modulePath = moduleName.replaceAll('.', '/');
    if (!files.has(`${modulePath}.py`) && !files.has(`${modulePath}/__init__.py`)) {
      throw invalidArchive('BAD_COMPONENT', `[${COMPONENTS_TABLE}] ${role} = ${JSON.stringify(reference)} points at module ${moduleName}, ` +
        `but there is no ${modulePath}.py or ${modulePath}/__init__.py under ${describeRoot(layout.rootPrefix)}.`);
    }
  }
}

/** Flower flattens nested tables into dotted keys: [tool.flwr.app.config.train] lr = 0.1 is 'train.lr'. */
function flattenRunConfig(table: TomlTable, prefix = '', depth = 1, into = new Map<string, RunConfigValue>()): Map<string, RunConfigValue> {
  for (const [key, value] of Object.entries(table)) {
    const dottedKey = `${prefix}${key}`;
    if (isTable(value)) {
      if (depth === MAX_CONFIG_DEPTH) throw badPyproject(`[${CONFIG_TABLE}] nests tables more than ${MAX_CONFIG_DEPTH} levels deep, at ${dottedKey}.`);
      flattenRunConfig(value, `${dottedKey}.`, depth + 1, into);
    } else if (!isRunConfigValue(value)) {
      throw badPyproject(`[${CONFIG_TABLE}] ${dottedKey} is ${describeTomlValue(value)}; run config values must be strings, finite numbers or booleans.`);
    } else if (into.has(dottedKey)) {
      throw badPyproject(`[${CONFIG_TABLE}] defines ${dottedKey} twice (once as a quoted key, once through nested tables).`);
    } else {
      into.set(dottedKey, value);
    }
  }
  return into;
}

function isTable(value: unknown): value is TomlTable {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

function isRunConfigValue(value: unknown): value is RunConfigValue {
  return typeof value === 'string' || typeof value === 'boolean' || (typeof value === 'number' && Number.isFinite(value));
}

function describeTomlValue(value: unknown): string {
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Date) return 'a date or time';
  if (typeof value === 'number') return Number.isFinite(value) ? `the number ${value}` : `the non-finite number ${value}`;
  if (isTable(value)) return 'a table';
  return `${JSON.stringify(value)}`;
}



function badPyproject(message: string) {
  return invalidArchive('BAD_PYPROJECT', message);
}
