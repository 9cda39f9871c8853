import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import JSZip from 'jszip';

export interface AppFixture {
  name?: string;
  version?: string;
  /** Put everything inside this folder, as zipping a folder does. */
  folder?: string;
  config?: string;
  /** Extra or replacement files, path -> content. */
  files?: Record<string, string>;
}

/** A small, valid Flower App in Flower's template layout, zipped in memory. */
export async function flowerAppZip(fixture: AppFixture = {}): Promise<Buffer> {
  const name = fixture.name ?? 'demo-app';
  const pyproject = `[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "${name}"
version = "${fixture.version ?? '1.0.0'}"
dependencies = ["flwr>=1.20"]

[tool.flwr.app]
publisher = "pollen-tests"

[tool.flwr.app.components]
serverapp = "demo.server_app:app"
clientapp = "demo.client_app:app"

[tool.flwr.app.config]
${fixture.config ?? 'num-server-rounds = 3\nlearning-rate = 0.1\nlocal-epochs = 1'}
`;
  const files: Record<string, string> = {
    'pyproject.toml': pyproject,
    'demo/__init__.py': '',
    'demo/server_app.py': 'from flwr.serverapp import ServerApp\napp = ServerApp()\n',
    'demo/client_app.py': 'from flwr.clientapp import ClientApp\napp = ClientApp()\n',
    ...fixture.files,
  };
  const zip = new JSZip();
  for (const [path, content] of Object.entries(files)) zip.file(fixture.folder ? `${fixture.folder}/${path}` : path, content);
  return zip.generateAsync({ type: 'nodebuffer', compression: 'DEFLATE' });
}

/** Zips a folder of an app as a person would (caches and build output left out), with `extraFiles` added. */
export async function zipDirectory(dir: string, extraFiles: Record<string, string> = {}): Promise<Buffer> {
  const zip = new JSZip();
  const walk = (relative: string) => {
    for (const entry of readdirSync(path.join(dir, relative), { withFileTypes: true })) {
      if (['__pycache__', '.venv', 'dist'].includes(entry.name) || entry.name.endsWith('.pyc')) continue;
      const child = path.posix.join(relative, entry.name);
      if (entry.isDirectory()) walk(child);
      else zip.file(child, readFileSync(path.join(dir, child)));
    }
  };
  walk('');
  for (const [name, content] of Object.entries(extraFiles)) zip.file(name, content);
  return zip.generateAsync({ type: 'nodebuffer', compression: 'DEFLATE' });
}
