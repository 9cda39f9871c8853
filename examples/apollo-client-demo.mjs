// The first five minutes with Pollen, and the reference for Apollo Client front ends:
// sign up (or in), create a project, upload the example Flower App, train 3 rounds on 2 clients
// and print every round's metrics as they arrive; then download the trained model and evaluate it
// here, in Python, to see that it is the model the server evaluated last.
//
//   npm run demo                      # against http://localhost:4000/graphql
//   POLLEN_URL=http://host:4000/graphql npm run demo
//   POLLEN_DEMO_CLIENTS=100 POLLEN_DEMO_FEDERATION=SIMULATION npm run demo   # 100 virtual clients
//
// Queries and mutations go over HTTP (uploads as GraphQL multipart requests, with the
// apollo-require-preflight header Pollen's CSRF protection asks for); subscriptions go over
// graphql-ws with the access token in connectionParams.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { ApolloClient, ApolloLink, CombinedGraphQLErrors, gql, InMemoryCache } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { getMainDefinition } from '@apollo/client/utilities';
import UploadHttpLink from 'apollo-upload-client/UploadHttpLink.mjs';
import { createClient } from 'graphql-ws';
import JSZip from 'jszip';
import WebSocket from 'ws';

const url = process.env.POLLEN_URL ?? 'http://localhost:4000/graphql';
const username = process.env.POLLEN_DEMO_USER ?? 'demo';
const password = process.env.POLLEN_DEMO_PASSWORD ?? 'Demo!pass1';
const clients = Number(process.env.POLLEN_DEMO_CLIENTS ?? 2);
const federation = process.env.POLLEN_DEMO_FEDERATION ?? 'LOCAL';
const appDir = fileURLToPath(new URL('./digits-app/', import.meta.url));
const evaluateModel = fileURLToPath(new URL('./evaluate-digits-model.py', import.meta.url));
// Python with numpy and scikit-learn: Pollen's own venv when the demo runs from its repository.
const venvPython = fileURLToPath(new URL('../.venv/bin/python', import.meta.url));
const python = process.env.POLLEN_DEMO_PYTHON ?? (existsSync(venvPython) ? venvPython : 'python3');

let accessToken;

const withToken = new ApolloLink((operation, forward) => {
  operation.setContext(({ headers = {} }) => ({
    headers: { ...headers, ...(accessToken ? { authorization: `Bearer ${accessToken}` } : {}) },
  }));
  return forward(operation);
});
const http = new UploadHttpLink({ uri: url, headers: { 'apollo-require-preflight': 'true' } });
const ws = new GraphQLWsLink(createClient({
  url: url.replace(/^http/, 'ws'),
  webSocketImpl: WebSocket,
  connectionParams: () => ({ authorization: `Bearer ${accessToken}` }),
}));
const isSubscription = ({ query }) => {
  const definition = getMainDefinition(query);
  return definition.kind === 'OperationDefinition' && definition.operation === 'subscription';
};
const client = new ApolloClient({
  link: ApolloLink.split(isSubscription, ws, withToken.concat(http)),
  cache: new InMemoryCache(),
});

const REGISTER = gql`mutation Register($input: RegisterInput!) { register(input: $input) { accessToken } }`;
const LOGIN = gql`mutation Login($input: LoginInput!) { login(input: $input) { accessToken } }`;
const CREATE_PROJECT = gql`mutation CreateProject($input: CreateProjectInput!) { createProject(input: $input) { id name } }`;
const UPLOAD_APP = gql`mutation UploadApp($projectId: ID!, $file: Upload!) {
  uploadApp(projectId: $projectId, file: $file) { id name version runConfigDefaults }
}`;
const CREATE_CONFIG = gql`mutation CreateConfig($input: CreateTrainingConfigInput!) { createTrainingConfig(input: $input) { id name version } }`;
const START = gql`mutation Start($input: StartTrainingInput!) { startTraining(input: $input) { id status } }`;
const JOB_UPDATES = gql`subscription JobUpdates($jobId: ID!) { trainingJobUpdated(jobId: $jobId) { status statusReason currentRound } }`;
const METRICS = gql`subscription Metrics($jobId: ID!) { roundMetrics(jobId: $jobId, fromRound: 0) { round phase values } }`;
const RESULTS = gql`query Results($id: ID!) {
  trainingJob(id: $id) {
    finalCheckpoint { round sizeBytes sha256 downloadPath arrays { name shape dtype } }
    metrics(phase: SERVER_EVALUATE) { round values }
  }
}`;

async function signIn() {
  try {
    const { data } = await client.mutate({ mutation: REGISTER, variables: { input: { username, email: `${username}@example.com`, password } } });
    console.log(`Signed up as ${username}.`);
    return data.register.accessToken;
  } catch (error) {
    if (!CombinedGraphQLErrors.is(error) || error.errors[0]?.extensions?.code !== 'CONFLICT') throw error;
  }
  const { data } = await client.mutate({ mutation: LOGIN, variables: { input: { username, password } } });
  console.log(`Signed in as ${username}.`);
  return data.login.accessToken;
}

/** Zips the example app as a person would zip its folder. */
async function zipApp() {
  const zip = new JSZip();
  const add = (relative) => {
    for (const entry of readdirSync(path.join(appDir, relative), { withFileTypes: true })) {
      if (entry.name === '__pycache__') continue;
      const child = path.posix.join(relative, entry.name);
      if (entry.isDirectory()) add(child);
      else zip.file(child, readFileSync(path.join(appDir, child)));
    }
  };
  add('');
  return zip.generateAsync({ type: 'uint8array', compression: 'DEFLATE' });
}

function formatValues(values) {
  return Object.entries(values)
    .map(([key, value]) => `${key}=${typeof value === 'number' && !Number.isInteger(value) ? value.toFixed(4) : value}`)
    .join('  ');
}

async function main() {
  accessToken = await signIn();
  const { data: { createProject: project } } = await client.mutate({
    mutation: CREATE_PROJECT, variables: { input: { name: `Demo ${new Date().toISOString().slice(0, 19)}` } },
  });
  console.log(`Created project "${project.name}".`);

  const file = new File([await zipApp()], 'digits-app.zip', { type: 'application/zip' });
  const { data: { uploadApp: app } } = await client.mutate({ mutation: UPLOAD_APP, variables: { projectId: project.id, file } });
  console.log(`Uploaded ${app.name} ${app.version}; it declares ${Object.keys(app.runConfigDefaults).join(', ')}.`);

  const { data: { createTrainingConfig: config } } = await client.mutate({
    mutation: CREATE_CONFIG,
    variables: { input: { projectId: project.id, name: `demo, ${clients} clients`, rounds: 3, clients, learningRate: 0.1, modelType: 'logistic' } },
  });
  const { data: { startTraining: job } } = await client.mutate({ mutation: START, variables: { input: { appId: app.id, configId: config.id, federation } } });
  console.log(`Started training job ${job.id}: 3 rounds on ${clients} clients (${federation}). Metrics as they arrive:\n`);

  const metrics = client.subscribe({ query: METRICS, variables: { jobId: job.id } }).subscribe({
    next: ({ data }) => {
      const { round, phase, values } = data.roundMetrics;
      console.log(`  round ${round}  ${phase.padEnd(15)}  ${formatValues(values)}`);
    },
    error: (error) => console.error('metrics subscription failed:', error.message),
  });

  const final = await new Promise((resolve, reject) => {
    let last;
    client.subscribe({ query: JOB_UPDATES, variables: { jobId: job.id } }).subscribe({
      next: ({ data }) => {
        const update = data.trainingJobUpdated;
        if (update.status !== last?.status) console.log(`  status: ${update.status}`);
        last = update;
      },
      error: reject,
      complete: () => resolve(last),
    });
  });
  metrics.unsubscribe();
  console.log(`\nFinal status: ${final.status}${final.statusReason ? ` (${final.statusReason})` : ''}`);
  if (final.status !== 'COMPLETED') return 1;
  return (await evaluateFinalModel(job.id)) ? 0 : 1;
}

/**
 * Downloads the job's final model (the npz Pollen kept of the last round, with the same bearer
 * token as /graphql) and evaluates it locally with the app's own code; true when it scores what
 * the server-side evaluation of that round did.
 */
async function evaluateFinalModel(jobId) {
  const { data: { trainingJob } } = await client.query({ query: RESULTS, variables: { id: jobId }, fetchPolicy: 'network-only' });
  const checkpoint = trainingJob.finalCheckpoint;
  const response = await fetch(new URL(checkpoint.downloadPath, url), { headers: { authorization: `Bearer ${accessToken}` } });
  if (!response.ok) throw new Error(`downloading the model: HTTP ${response.status}`);
  const bytes = Buffer.from(await response.arrayBuffer());
  const intact = createHash('sha256').update(bytes).digest('hex') === checkpoint.sha256;
  const shapes = checkpoint.arrays.map((array) => `${array.name} ${array.dtype}[${array.shape.join('x')}]`).join(', ');
  console.log(`\nDownloaded the final model (round ${checkpoint.round}, ${bytes.length} bytes, sha256 ${intact ? 'verified' : 'MISMATCH'}): ${shapes}.`);
  const dir = mkdtempSync(path.join(tmpdir(), 'pollen-demo-'));
  try {
    const file = path.join(dir, `round-${checkpoint.round}.npz`);
    writeFileSync(file, bytes);
    const local = JSON.parse((await promisify(execFile)(python, [evaluateModel, file])).stdout);
    const server = trainingJob.metrics.find((metric) => metric.round === checkpoint.round).values;
    const same = local.test_acc === server.test_acc && local.test_loss === server.test_loss;
    console.log(`Evaluated it locally: test_acc=${local.test_acc} test_loss=${local.test_loss}; the server's evaluation of round ` +
      `${checkpoint.round}: test_acc=${server.test_acc} test_loss=${server.test_loss}. ${same ? 'Equal.' : 'DIFFERENT.'}`);
    return intact && same;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main()
  .then((code) => process.exit(code))
  .catch((error) => {
    console.error(`Demo failed: ${error.message}`);
    process.exit(1);
  });
