import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { zipDirectory } from './fixtures.js';
import type { FederationKind } from '../generated/graphql.js';
import type { GraphQLClient } from './graphql-client.js';
import type { PollenProcess } from './pollen-process.js';

const STRONG_PASSWORD = 'Pollen!2026';

/** Registers a fresh user and returns the session and a client signed in as them. */
export async function signUp(pollen: PollenProcess, name = `user_${randomUUID().slice(0, 8)}`) {
  const { RegisterDocument } = await import('../generated/graphql.js');
  const anonymous = pollen.client();
  const { register } = await anonymous.data(RegisterDocument, {
    input: { username: name, email: `${name}@example.com`, password: STRONG_PASSWORD },
  });
  return { session: register, password: STRONG_PASSWORD, client: pollen.client(register.accessToken) };
}

/** Zips an app folder and uploads it to the project; returns the app's id. */
export async function uploadAppDir(client: GraphQLClient, projectId: string, appDir: string): Promise<string> {
  const { UploadAppDocument } = await import('../generated/graphql.js');
  const upload = await client.upload(UploadAppDocument, { projectId, file: null }, {
    file: { bytes: await zipDirectory(appDir), filename: `${path.basename(appDir)}.zip` },
  });
  if (upload.errors || !upload.data) throw new Error(`upload failed: ${JSON.stringify(upload.errors)}`);
  return upload.data.uploadApp.id;
}

/** Uploads an app folder, saves a config and starts training it (2 clients, LOCAL, unless told); returns the queued job's id. */
export async function queueJob(
  client: GraphQLClient, projectId: string, appDir: string, rounds: number, runConfig?: Record<string, unknown>,
  { clients = 2, federation = 'LOCAL' }: { clients?: number; federation?: FederationKind } = {},
): Promise<string> {
  const { CreateTrainingConfigDocument, StartTrainingDocument } = await import('../generated/graphql.js');
  const appId = await uploadAppDir(client, projectId, appDir);
  const { createTrainingConfig } = await client.data(CreateTrainingConfigDocument, {
    input: { projectId, name: `${rounds} rounds`, rounds, clients, runConfig },
  });
  const { startTraining } = await client.data(StartTrainingDocument, {
    input: { appId, configId: createTrainingConfig.id, federation },
  });
  return startTraining.id;
}
