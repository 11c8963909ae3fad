// The Express server's requests and responses are made with the app's prototypes, and Express
// behaves as it does on a plain http.createServer(app): real servers on loopback.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type Express } from 'express';
import { createExpressServer, expressServerClasses } from './express-server';

const servers: http.Server[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

async function serve(server: http.Server): Promise<string> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Whether each request arrived already made with the app's prototypes, before Express saw it. */
function watchPrototypes(server: http.Server, app: Express): boolean[] {
  const seen: boolean[] = [];
  server.prependListener('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    seen.push(Object.getPrototypeOf(req) === app.request && Object.getPrototypeOf(res) === app.response);
  });
  return seen;
}

test('requests and responses are made with the app prototypes, so Express has nothing to change', async () => {
  const app = express();
  app.get('/items/:id', (req, res) => {
    res.locals.seen = 'yes';
    const q = typeof req.query.q === 'string' ? req.query.q : undefined;
    res.status(201).json({ id: req.params.id, q, host: req.get('host'), app: req.app === app, locals: res.locals.seen as string });
  });
  const server = createExpressServer(app);
  const arrived = watchPrototypes(server, app);
  const url = await serve(server);

  const response = await fetch(`${url}/items/7?q=x`);

  expect(response.status).toBe(201);
  expect(await response.json()).toEqual({ id: '7', q: 'x', host: new URL(url).host, app: true, locals: 'yes' });
  expect(arrived).toEqual([true]);
});

test('a plain http.createServer(app) makes them with Node.js prototypes, which Express then changes', async () => {
  const app = express();
  app.use((req, res) => res.end());
  const server = http.createServer(app);
  const arrived = watchPrototypes(server, app);
  const url = await serve(server);

  await (await fetch(url)).text();

  expect(arrived).toEqual([false]);
});

test('requests are still instances of http.IncomingMessage, responses of http.ServerResponse', async () => {
  const app = express();
  app.use((req, res) => res.json({ request: req instanceof http.IncomingMessage, response: res instanceof http.ServerResponse }));
  const url = await serve(createExpressServer(app));

  expect(await (await fetch(url)).json()).toEqual({ request: true, response: true });
});

test('a mounted app gets its own prototypes for its part, and the parent app its own back after it', async () => {
  const app = express();
  const inner = express();
  inner.get('/', (req, _res, next) => {
    (req as express.Request & { innerApp?: boolean }).innerApp = req.app === inner;
    next();
  });
  app.use('/inner', inner);
  app.use((req, res) => res.json({ innerApp: (req as express.Request & { innerApp?: boolean }).innerApp, outerApp: req.app === app }));
  const url = await serve(createExpressServer(app));

  expect(await (await fetch(`${url}/inner`)).json()).toEqual({ innerApp: true, outerApp: true });
});

test('one app gets the same classes every time; another app its own', () => {
  const app = express();
  const other = express();

  expect(expressServerClasses(app)).toBe(expressServerClasses(app));
  expect(expressServerClasses(other).IncomingMessage).not.toBe(expressServerClasses(app).IncomingMessage);
  expect(Object.getPrototypeOf(app.request)).not.toBe(Object.getPrototypeOf(other.request));
});

test("the server's own options are kept", async () => {
  const app = express();
  app.use((_req, res) => res.end('ok'));
  const url = await serve(createExpressServer(app, { maxHeaderSize: 1024 }));

  const response = await fetch(url, { headers: { 'x-long': 'a'.repeat(2048) } });

  expect(response.status).toBe(431);
});
