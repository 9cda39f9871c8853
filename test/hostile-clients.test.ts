import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { MeDocument } from './generated/graphql.js';
import { PollenProcess } from './support/testkit.js';

let pollen: PollenProcess;
beforeAll(async () => {
  pollen = await PollenProcess.start();
});
afterAll(async () => {
  await pollen?.stop();
  pollen?.removeDataDir();
});

describe('hostile clients', () => {
  it('have WebSocket connections that never authenticate closed, and the server still answers', async () => {
    const sockets = await Promise.all(Array.from({ length: 500 }, () => new Promise<WebSocket>((resolve, reject) => {
      const socket = new WebSocket(pollen.wsUrl, 'graphql-transport-ws');
      socket.once('open', () => resolve(socket));
      socket.once('error', reject);
    })));
    // They never send connection_init: graphql-ws closes them (4408) after its init timeout.
    const codes = await Promise.all(sockets.map((socket) => new Promise<number>((resolve) => socket.once('close', resolve))));
    expect(new Set(codes)).toEqual(new Set([4408]));
    expect((await pollen.client().data(MeDocument)).me).toBeNull();
  }, 60_000);

  it('get 400 for a malformed multipart request', async () => {
    const response = await fetch(pollen.url, {
      method: 'POST',
      headers: { 'content-type': 'multipart/form-data; boundary=xyz', 'apollo-require-preflight': 'true' },
      body: '--xyz\r\nContent-Disposition: form-data; name="operations"\r\n\r\n{not json\r\n--xyz--\r\n',
    });
    expect(response.status).toBe(400);
  });

  it('get 400 for a JSON body that is not valid UTF-8', async () => {
    const body = Buffer.concat([Buffer.from('{"query":"{ me { id } }","x":"'), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"}')]);
    const response = await fetch(pollen.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect(response.status).toBeGreaterThanOrEqual(400);
    expect(response.status).toBeLessThan(500);
  });
});
