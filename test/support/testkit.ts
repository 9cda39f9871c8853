/**
 * The one module test files import from. What it offers lives in files by role:
 * pollen-process.ts (a real Pollen, usePollen), graphql-client.ts (HTTP), graphql-ws.ts (WebSocket),
 * stories.ts (users and jobs), processes.ts (what runs on the machine), figures.ts (statistics),
 * own-ferretdb.ts (a FerretDB a test can stop and restart), browser.ts (a headless Chromium) and
 * mlflow-server.ts (a real MLflow tracking server, and a gate that can make it hang).
 */
export { launchChromium, watchPage } from './browser.js';
export { errorCode, GraphQLClient, sendFromAnotherProcess, type GraphQLResponse, type PreparedRequest, type SentRequest } from './graphql-client.js';
export { connectWebSocket, type Collected, type WsConnection } from './graphql-ws.js';
export { percentile, timed } from './figures.js';
export { MlflowServer, TcpGate } from './mlflow-server.js';
export { OwnFerretDB } from './own-ferretdb.js';
export { PollenProcess, REPO_ROOT, usePollen, type PollenOptions } from './pollen-process.js';
export { jobProcesses, localFederationsDir, processesIn, processesUnder, runProcessesLeft } from './processes.js';
export { queueJob, signUp, uploadAppDir } from './stories.js';
