import { randomBytes } from 'node:crypto';
import http from 'node:http';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  AddProjectMemberDocument, CancelTrainingDocument, CreateProjectDocument, DeleteAccountDocument, DeleteProjectDocument, LeaveProjectDocument, LoginDocument,
  LogoutDocument, MeDocument, NodeStatusChangedDocument, ProjectDocument, RemoveProjectMemberDocument, RoundMetricsDocument,
  RegisterNodeDocument, TrainingJobLogsDocument, TrainingJobWithTeamDocument,
} from './generated/graphql.js';
import { connectWebSocket, errorCode, PollenProcess, queueJob, REPO_ROOT, signUp, usePollen, type Collected } from './support/testkit.js';

// Jobs stay QUEUED: what is watched here is access, not training.
const pollen = usePollen({ env: { MAX_CONCURRENT_JOBS: '0', WS_MAX_SOCKETS_PER_USER: '3', WS_MAX_SUBSCRIPTIONS_PER_SOCKET: '4' } });

const DIGITS_APP = path.join(REPO_ROOT, 'examples/digits-app');

/** An owner's project with a queued job, and a member of it with `role`. */
async function teamWithJob(role: 'VIEWER' | 'EDITOR' = 'VIEWER') {
  const owner = await signUp(pollen);
  const member = await signUp(pollen);
  const projectId = (await owner.client.data(CreateProjectDocument, { input: { name: 'shared work' } })).createProject.id;
  await owner.client.data(AddProjectMemberDocument, { projectId, username: member.session.user.username, role });
  const jobId = await queueJob(owner.client, projectId, DIGITS_APP, 3);
  return { owner, member, projectId, jobId };
}

/** Resolves with the error a subscription ended with (as an error message or with its last result), and when. */
async function endedWith(collected: Collected<unknown>, since: number) {
  await collected.ended.catch(() => undefined);
  return { error: collected.errors?.[0], ms: performance.now() - since };
}

/**
 * Waits for a subscription's first event: then the server holds it. Subscriptions that send
 * nothing at first are opened before one that does, on the same socket, and taken to be held
 * once it is.
 */
async function firstEvent(collected: Collected<unknown>) {
  const deadline = Date.now() + 10_000;
  while (collected.items.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  expect(collected.items.length, JSON.stringify(collected.errors)).toBeGreaterThan(0);
}

describe('a member removed from a project', () => {
  it('loses every subscription into it within a second, with FORBIDDEN, and the socket stays usable', async () => {
    const { owner, member, projectId, jobId } = await teamWithJob();
    const socket = connectWebSocket(pollen.wsUrl, member.session.accessToken);
    try {
      const watching = [
        socket.subscribe(RoundMetricsDocument, { jobId, fromRound: 0 }),
        socket.subscribe(TrainingJobLogsDocument, { jobId }),
        socket.subscribe(NodeStatusChangedDocument, { projectId }),
        socket.subscribe(TrainingJobWithTeamDocument, { jobId }),
      ];
      await firstEvent(watching[3]!);
      await owner.client.data(RegisterNodeDocument, { input: { projectId, name: 'edge-1', host: '127.0.0.1', sshUser: 'pollen', sshPort: 9 } });
      await firstEvent(watching[2]!);
      // While a member, the member list came with no one's email but their own.
      const team = (watching[3]!.items[0] as { trainingJobUpdated: { project: { members: Array<{ user: { username: string; email: string | null } }> } } })
        .trainingJobUpdated.project.members;
      expect(team.map((m) => m.user.email)).toEqual([null, member.session.user.email]);

      const removedAt = performance.now();
      await owner.client.data(RemoveProjectMemberDocument, { projectId, userId: member.session.user.id });
      for (const collected of watching) {
        const { error, ms } = await endedWith(collected, removedAt);
        expect(error?.extensions).toMatchObject({ code: 'FORBIDDEN', reason: 'ACCESS_REVOKED' });
        expect(ms).toBeLessThan(1000);
      }
      expect((await socket.execute(MeDocument)).data?.me?.id).toBe(member.session.user.id);
      // And a new subscription is refused as for any outsider.
      const again = socket.subscribe(NodeStatusChangedDocument, { projectId });
      expect((await endedWith(again, removedAt)).error?.extensions?.code).toBe('NOT_FOUND');
    } finally {
      await socket.client.dispose();
    }
  });

  it('who leaves, or whose project is deleted, loses them too; a member who stays keeps theirs', async () => {
    const { owner, member, projectId, jobId } = await teamWithJob('EDITOR');
    const ownerSocket = connectWebSocket(pollen.wsUrl, owner.session.accessToken);
    const memberSocket = connectWebSocket(pollen.wsUrl, member.session.accessToken);
    try {
      const nodes = ownerSocket.subscribe(NodeStatusChangedDocument, { projectId });
      const ownerWatch = ownerSocket.subscribe(TrainingJobWithTeamDocument, { jobId });
      const memberWatch = memberSocket.subscribe(TrainingJobWithTeamDocument, { jobId });
      await Promise.all([firstEvent(ownerWatch), firstEvent(memberWatch)]);
      const leftAt = performance.now();
      await member.client.data(LeaveProjectDocument, { projectId });
      const left = await endedWith(memberWatch, leftAt);
      expect(left.error?.extensions?.code).toBe('FORBIDDEN');
      expect(left.ms).toBeLessThan(1000);
      expect(ownerWatch.errors).toBeUndefined();

      // Deleting needs the job finished; a queued job is cancelled at once, which ends its stream.
      await owner.client.data(CancelTrainingDocument, { id: jobId });
      await ownerWatch.ended;
      expect(ownerWatch.errors).toBeUndefined();
      const deletedAt = performance.now();
      await owner.client.data(DeleteProjectDocument, { id: projectId });
      const deleted = await endedWith(nodes, deletedAt);
      expect(deleted.error?.extensions?.code).toBe('FORBIDDEN');
      expect(deleted.ms).toBeLessThan(1000);
    } finally {
      await ownerSocket.client.dispose();
      await memberSocket.client.dispose();
    }
  });
});

describe('signing out', () => {
  it('ends that sign-in at once: its access tokens and sockets, not the other sign-ins', async () => {
    const { session, password } = await signUp(pollen);
    const second = (await pollen.client().data(LoginDocument, { input: { username: session.user.username, password } })).login;
    const first = connectWebSocket(pollen.wsUrl, session.accessToken);
    const other = connectWebSocket(pollen.wsUrl, second.accessToken);
    try {
      expect((await first.execute(MeDocument)).data?.me).not.toBeNull();
      expect((await other.execute(MeDocument)).data?.me).not.toBeNull();
      await pollen.client().data(LogoutDocument, { refreshToken: session.refreshToken });
      expect(await first.closed).toMatchObject({ code: 4403 });
      const refused = await pollen.client(session.accessToken).request(MeDocument);
      expect(refused.status).toBe(401);
      expect(errorCode(refused)).toBe('UNAUTHENTICATED');
      expect(refused.errors![0]!.message).toMatch(/sign-in has ended/);
      expect((await other.execute(MeDocument)).data?.me?.id).toBe(session.user.id);
      expect((await pollen.client(second.accessToken).data(MeDocument)).me?.id).toBe(session.user.id);
    } finally {
      await first.client.dispose();
      await other.client.dispose();
    }
  });

  it('closes a socket whose access token expires, without an error in the server log', async () => {
    const shortLived = await PollenProcess.start({ env: { ACCESS_TOKEN_TTL: '2s' } });
    try {
      const { session } = await signUp(shortLived);
      const socket = connectWebSocket(shortLived.wsUrl, session.accessToken);
      const client = shortLived.client(session.accessToken);
      const projectId = (await client.data(CreateProjectDocument, { input: { name: 'brief' } })).createProject.id;
      const watching = socket.subscribe(NodeStatusChangedDocument, { projectId });
      await client.data(RegisterNodeDocument, { input: { projectId, name: 'edge-1', host: '127.0.0.1', sshUser: 'pollen', sshPort: 9 } });
      await firstEvent(watching);
      expect(await socket.closed).toMatchObject({ code: 4403, reason: 'Forbidden: access token expired' });
      await watching.ended.catch(() => undefined);
      expect(shortLived.logs().filter((line) => Number(line.level) >= 50)).toEqual([]);
    } finally {
      await shortLived.stop();
      shortLived.removeDataDir();
    }
  });
});

describe('sockets and subscriptions', () => {
  it('are capped per user and per socket', async () => {
    const { session } = await signUp(pollen);
    const sockets = Array.from({ length: 4 }, () => connectWebSocket(pollen.wsUrl, session.accessToken));
    const closed = new Set<number>();
    sockets.forEach((socket, i) => void socket.closed.then(() => closed.add(i)));
    try {
      // Three fit (WS_MAX_SOCKETS_PER_USER=3); whichever comes fourth is closed.
      expect(await Promise.any(sockets.map((s) => s.closed))).toMatchObject({ code: 4429 });
      const open = sockets.filter((_, i) => !closed.has(i));
      expect(open).toHaveLength(3);
      for (const socket of open) expect((await socket.execute(MeDocument)).data?.me?.id).toBe(session.user.id);
      const projectId = (await pollen.client(session.accessToken).data(CreateProjectDocument, { input: { name: 'many' } })).createProject.id;
      const running = Array.from({ length: 5 }, () => open[0]!.subscribe(NodeStatusChangedDocument, { projectId }));
      const refused = await Promise.race(running.map((collected) => collected.ended.then(() => undefined, () => collected.errors?.[0])));
      expect(refused?.extensions?.code).toBe('RATE_LIMITED');
      expect((await open[0]!.execute(MeDocument)).errors?.[0]?.extensions?.code).toBe('RATE_LIMITED');
    } finally {
      await Promise.all(sockets.map((s) => s.client.dispose()));
    }
  });

  it('close a socket that announces a frame over the JSON body limit, before reading it', async () => {
    const before = pollen.rssBytes();
    // Each announces a 90 MB message and sends its first 64 KB: the server must answer without waiting for the rest.
    const codes = await Promise.all(Array.from({ length: 3 }, () => closeCodeForHugeFrame(pollen.wsUrl, 90 * 1024 * 1024)));
    expect(codes).toEqual([1009, 1009, 1009]);
    expect(pollen.rssBytes() - before).toBeLessThan(64 * 1024 * 1024);
    expect((await pollen.client().data(MeDocument)).me).toBeNull();
  });
});

/**
 * Opens a graphql-ws socket by hand, sends the header of a masked text frame of `length` bytes and
 * 64 KB of it, and resolves with the close code the server answers with.
 */
function closeCodeForHugeFrame(wsUrl: string, length: number): Promise<number> {
  const url = new URL(wsUrl);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('not closed within 10 s')), 10_000);
    const request = http.request({
      host: url.hostname, port: url.port, path: url.pathname,
      headers: {
        Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': randomBytes(16).toString('base64'), 'Sec-WebSocket-Protocol': 'graphql-transport-ws',
      },
    });
    request.on('error', reject);
    request.on('upgrade', (_response, socket) => {
      const header = Buffer.alloc(14);
      header[0] = 0x81; // FIN, text
      header[1] = 0x80 | 127; // masked, 64-bit length
      header.writeBigUInt64BE(BigInt(length), 2);
      randomBytes(4).copy(header, 10);
      socket.on('error', () => undefined);
      socket.on('data', (data: Buffer) => {
        // A close frame: 0x88, its length, then the code.
        if (data[0] === 0x88) {
          clearTimeout(timer);
          resolve(data.readUInt16BE(2));
          socket.destroy();
        }
      });
      socket.write(Buffer.concat([header, randomBytes(64 * 1024)]));
    });
    request.end();
  });
}

describe('deleting an account', () => {
  it('deletes solo projects, leaves shared ones, frees the name and ends every sign-in and socket', async () => {
    const { owner, member, projectId } = await teamWithJob('EDITOR');
    const solo = (await member.client.data(CreateProjectDocument, { input: { name: 'mine alone' } })).createProject.id;
    const socket = connectWebSocket(pollen.wsUrl, member.session.accessToken);
    try {
      expect((await socket.execute(MeDocument)).data?.me).not.toBeNull();
      const wrong = await member.client.request(DeleteAccountDocument, { password: 'Not!theirs1' });
      expect(errorCode(wrong)).toBe('BAD_USER_INPUT');

      expect(await member.client.data(DeleteAccountDocument, { password: member.password })).toEqual({ deleteAccount: true });
      expect(await socket.closed).toMatchObject({ code: 4403 });
      expect(errorCode(await member.client.request(MeDocument))).toBe('UNAUTHENTICATED');
      expect(errorCode(await member.client.request(CreateProjectDocument, { input: { name: 'ghost' } }))).toBe('UNAUTHENTICATED');
      expect(errorCode(await pollen.client().request(LoginDocument, {
        input: { username: member.session.user.username, password: member.password },
      }))).toBe('UNAUTHENTICATED');
      expect(errorCode(await owner.client.request(ProjectDocument, { id: solo }))).toBe('NOT_FOUND');
      const { project } = await owner.client.data(ProjectDocument, { id: projectId });
      expect(project!.members.map((m) => m.user.id)).toEqual([owner.session.user.id]);
      // The name is free again.
      await signUp(pollen, member.session.user.username);
    } finally {
      await socket.client.dispose();
    }
  });

  it('is refused, changing nothing, while the user is the last owner of a project others share', async () => {
    const { owner, member, projectId } = await teamWithJob();
    const refused = await owner.client.request(DeleteAccountDocument, { password: owner.password });
    expect(errorCode(refused)).toBe('CONFLICT');
    expect(refused.errors![0]!.message).toMatch(/last owner of "shared work"/);
    expect((await owner.client.data(MeDocument)).me?.id).toBe(owner.session.user.id);
    expect((await member.client.data(ProjectDocument, { id: projectId })).project?.members).toHaveLength(2);
  });
});

