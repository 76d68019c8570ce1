// OpenWhisk action proxy for Node.js actions (no dependencies; runs inside the action container).
//
// Follows apache/openwhisk-runtime-nodejs core/nodejsActionBase (service.js, runner.js): /init evaluates the code
// (or unpacks a base64 zip and requires its package.json "main" / index.js), /run calls main with the parameters.
// A returned or resolved object is the result; a rejected promise is an application error {error};
// a thrown exception is a developer error "An error has occurred: ..."; a non-object is
// "The action did not return a dictionary.". Serves HTTP on a unix socket ($OW_PROXY_SOCKET), optionally TCP.
'use strict';

const http = require('http');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { execFileSync } = require('child_process');

const SENTINEL = 'XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX';
let userMain = null;
let busy = false;

function sentinel() {
  process.stdout.write(SENTINEL + '\n');
  process.stderr.write(SENTINEL + '\n');
}

function assertMainIsFunction(fn, name) {
  if (typeof fn !== 'function') {
    // A plain string, as runner.js rejects with: the /init error then has no "Error:" and no stack.
    // eslint-disable-next-line no-throw-literal
    throw `Action entrypoint '${name}' is not a function.`;
  }
  return fn;
}

function fromSource(code, main) {
  process.chdir(actionDir());
  // A fresh module/exports per action, so `exports.main = ...` works as with require().
  const mod = { exports: {} };
  const body = `${code}\ntry { return ${main}; } catch (e) {\n` +
    `  if (e.name === 'ReferenceError') { return module.exports.${main} || exports.${main}; } throw e;\n}`;
  // eslint-disable-next-line no-new-func
  const fn = new Function('require', 'module', 'exports', '__filename', '__dirname', body);
  return assertMainIsFunction(fn(require, mod, mod.exports, '/action/index.js', '/action'), main);
}

// The container's writable, exec-mapped action directory (a tmpfs the invoker mounts), else the temp dir.
function actionDir() {
  const base = process.env.OW_ACTION_DIR || '/action';
  try {
    fs.accessSync(base, fs.constants.W_OK);
    return base;
  } catch (e) {
    return os.tmpdir();
  }
}

function fromZip(code, main) {
  const dir = fs.mkdtempSync(path.join(actionDir(), 'action-'));
  process.chdir(dir);
  const zip = path.join(dir, 'action.zip');
  fs.writeFileSync(zip, Buffer.from(code, 'base64'));
  try {
    execFileSync('unzip', ['-qq', zip, '-d', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    throw new Error('There was an error uncompressing the action archive.');
  }
  fs.unlinkSync(zip);
  let entry = path.join(dir, 'index.js');
  const pkg = path.join(dir, 'package.json');
  if (fs.existsSync(pkg)) {
    const meta = JSON.parse(fs.readFileSync(pkg, 'utf8'));
    if (meta.main) entry = path.join(dir, meta.main);
  }
  if (!fs.existsSync(entry)) {
    throw new Error('Zipped actions must contain either package.json or index.js at the root.');
  }
  const parts = main.split('.');
  let fn = require(entry);
  for (const p of parts) fn = fn && fn[p];
  return assertMainIsFunction(fn, main);
}

async function init(body) {
  if (userMain !== null) return [403, { error: 'Cannot initialize the action more than once.' }];
  const value = (body && body.value) || {};
  if (!value.code) return [403, { error: 'Missing main/no code to execute.' }];
  for (const [k, v] of Object.entries(value.env || {})) {
    process.env[k] = typeof v === 'string' ? v : JSON.stringify(v);
  }
  const main = value.main || 'main';
  try {
    userMain = value.binary ? fromZip(value.code, main) : fromSource(value.code, main);
    return [200, { OK: true }];
  } catch (e) {
    console.error('Error during initialization:', e);
    return [502, { error: `Initialization has failed due to: ${e && e.stack ? String(e.stack) : e}` }];
  }
}

function serializeError(e) {
  if (e instanceof Error) {
    const out = { name: e.name, message: e.message };
    if (e.stack) out.stack = e.stack;
    return out;
  }
  return e;
}

async function run(body) {
  if (userMain === null) return [500, { error: 'Cannot run an uninitialized action.' }];
  for (const [k, v] of Object.entries(body || {})) {
    if (k !== 'value' && typeof v === 'string') process.env[`__OW_${k.toUpperCase()}`] = v;
  }
  let returned;
  try {
    returned = userMain((body && body.value) || {});
  } catch (e) {
    console.error(e);
    return [502, { error: `An error has occurred: ${e}` }];
  }
  let result;
  try {
    result = await Promise.resolve(returned);
    if (typeof result === 'undefined') result = {};
  } catch (e) {
    result = { error: e ? serializeError(e) : {} }; // a rejection is the action's own {error}
  }
  if (typeof result !== 'object') return [502, { error: 'The action did not return a dictionary.' }];
  return [200, result];
}

function handler(req, res) {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    let status;
    let out;
    let body = {};
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
    } catch (e) {
      body = null;
    }
    if (req.method !== 'POST' || (req.url !== '/init' && req.url !== '/run')) {
      [status, out] = [404, { error: `Unknown path ${req.url}` }];
    } else if (body === null || typeof body !== 'object') {
      [status, out] = [400, { error: 'The request body is not a JSON object.' }];
    } else if (busy) {
      [status, out] = [503, { error: 'The action is busy.' }];
    } else {
      busy = true;
      try {
        [status, out] = req.url === '/init' ? await init(body) : await run(body);
      } finally {
        busy = false;
        // As OpenWhisk's runtimes: after each run and a failed init; a good init's logs join the first run's.
        if (req.url === '/run' || status !== 200) sentinel();
      }
    }
    let text;
    try {
      text = JSON.stringify(out === undefined ? null : out);
    } catch (e) {
      [status, text] = [502, JSON.stringify({ error: 'The action did not return a dictionary.' })];
    }
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  });
}

function listen(server, where) {
  // The invoker keeps one connection per container for its whole life (paused in between): no idle timeouts.
  server.keepAliveTimeout = 0;
  server.requestTimeout = 0;
  server.headersTimeout = 0;
  server.listen(where);
}

process.on('SIGTERM', () => process.exit(0)); // PID 1 ignores SIGTERM without a handler
const sock = process.env.OW_PROXY_SOCKET || '/run/ow/proxy.sock';
fs.mkdirSync(path.dirname(sock), { recursive: true });
if (fs.existsSync(sock)) fs.unlinkSync(sock);
const unixServer = http.createServer(handler);
unixServer.on('listening', () => fs.chmodSync(sock, 0o666));
listen(unixServer, sock);
if (process.env.OW_PROXY_PORT) listen(http.createServer(handler), Number(process.env.OW_PROXY_PORT));
