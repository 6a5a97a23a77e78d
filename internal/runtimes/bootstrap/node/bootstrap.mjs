// Nimbus's Node.js runtime: the AWS Lambda Runtime API loop for nodejsNN.x.
//
// Started as `node bootstrap.mjs` with the standard Lambda environment
// (AWS_LAMBDA_RUNTIME_API, _HANDLER, LAMBDA_TASK_ROOT, ...). Node 18 or later,
// no dependencies. Handlers may be CommonJS or ES modules, async, or
// callback style (event, context, callback), as on Lambda.
//
// Logs follow Lambda's Node.js runtime: console.trace, debug, info, log,
// warn, error and fatal write one line each (the line ends of a multi-line
// message become carriage returns, as Lambda keeps such a record in one
// event), "timestamp\trequestId\tLEVEL\tmessage" or, with
// AWS_LAMBDA_LOG_FORMAT=JSON, Lambda's JSON object; AWS_LAMBDA_LOG_LEVEL
// silences the levels below it. In the JSON format with a level, what else the
// function writes to process.stdout and process.stderr is filtered the way
// Lambda's platform does: a line that is a JSON object with a "level" has
// that level, any other line is INFO.
//
// Response streaming: the global awslambda.streamifyResponse(handler) marks
// a handler (async (event, responseStream, context) => ...) whose answer is
// what it writes to responseStream (a Writable; setContentType before the
// first write), posted to the Runtime API as it is written, in Lambda's
// streaming mode (a chunked /response with
// Lambda-Runtime-Function-Response-Mode: streaming; an error after the first
// write goes in the trailers). awslambda.HttpResponseStream.from(stream,
// {statusCode, headers, cookies}) writes Lambda's HTTP integration prelude.

import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import util from 'node:util';

const API_PREFIX = '/2018-06-01/runtime';
const ERROR_TYPE_HEADER = 'Lambda-Runtime-Function-Error-Type';
const ERROR_BODY_HEADER = 'Lambda-Runtime-Function-Error-Body';
// Where Lambda's runtime marks a streaming handler, and the mark.
const STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');
const STREAM_RESPONSE = 'response';
const HTTP_INTEGRATION_TYPE = 'application/vnd.awslambda.http-integration-response';
const THIS_FILE = fileURLToPath(import.meta.url);

// Fault is an error the runtime reports with a Lambda error type of its own.
class Fault extends Error {
  constructor(errorType, message, stack) {
    super(message);
    // Not enumerable: logged errors show their own properties.
    Object.defineProperty(this, 'name', { value: errorType, enumerable: false });
    Object.defineProperty(this, 'errorType', { value: errorType, enumerable: false });
    Object.defineProperty(this, 'faultStack', { value: stack || [], enumerable: false });
  }
}

// Set (to 1) when started as a zygote: see becomeInstance.
const ZYGOTE_ENV = '_NIMBUS_ZYGOTE';
// The log format and level (readLogSettings, once the environment is the
// instance's).
let LOG_JSON = false;
let LOG_LEVEL = '';
// Lambda's application log levels, in order.
const LEVELS = { TRACE: 1, DEBUG: 2, INFO: 3, WARN: 4, ERROR: 5, FATAL: 6 };
// Where Lambda's runtime keeps the request id for logs: the last
// invocation's.
const REQUEST_ID = Symbol.for('aws.lambda.runtime.requestId');

// The runtime's own records bypass filterOutput.
const writeStdout = process.stdout.write.bind(process.stdout);

// jsonErrorReplacer shows an Error as Lambda's JSON records do.
function jsonErrorReplacer(_, value) {
  if (value instanceof Error) {
    return Object.assign(
      {
        errorType: value?.constructor?.name ?? 'UnknownError',
        errorMessage: value.message,
        stackTrace: typeof value.stack === 'string' ? value.stack.split('\n') : value.stack,
      },
      value,
    );
  }
  return value;
}

// formatJSON is a console call's record in Lambda's JSON format.
function formatJSON(level, message, params) {
  const record = { timestamp: new Date().toISOString(), level, requestId: globalThis[REQUEST_ID] };
  if (params.length === 0) {
    record.message = message;
    try {
      return JSON.stringify(record, jsonErrorReplacer);
    } catch {
      record.message = util.format(record.message);
      return JSON.stringify(record);
    }
  }
  record.message = util.format(message, ...params);
  const err = params.find((p) => p instanceof Error);
  if (err) {
    record.errorType = err?.constructor?.name ?? 'UnknownError';
    record.errorMessage = err.message;
    record.stackTrace = typeof err.stack === 'string' ? err.stack.split('\n') : [];
  }
  return JSON.stringify(record);
}

// logRecord writes a console call's record as one line.
function logRecord(level, message, params) {
  const line = LOG_JSON
    ? formatJSON(level, message, params)
    : `${new Date().toISOString()}\t${globalThis[REQUEST_ID]}\t${level}\t${util.format(message, ...params)}`;
  writeStdout(line.replace(/\n/g, '\r') + '\n');
}

// patchConsole makes the console methods write Lambda's records, and those
// below AWS_LAMBDA_LOG_LEVEL nothing.
function patchConsole() {
  const least = LEVELS[LOG_LEVEL] ?? LEVELS.TRACE;
  const method = (level) => (LEVELS[level] >= least ? (message, ...params) => logRecord(level, message, params) : () => {});
  console.trace = method('TRACE');
  console.debug = method('DEBUG');
  console.info = method('INFO');
  console.warn = method('WARN');
  console.error = method('ERROR');
  console.fatal = method('FATAL');
  console.log = console.info;
}

// formatted is an error as Lambda's text records show it.
function formatted(err) {
  const withProps = (_, v) => {
    if (!(v instanceof Error)) {
      return v;
    }
    const out = Object.assign({ errorType: v.name, errorMessage: v.message, code: v.code }, v);
    if (typeof v.stack === 'string') {
      out.stack = v.stack.split('\n');
    }
    return out;
  };
  try {
    return '\t' + JSON.stringify(err, withProps);
  } catch {
    return '\t' + JSON.stringify({ errorType: err.name, errorMessage: err.message, trace: [] });
  }
}

// logError logs an error that ended an invocation or the runtime, as Lambda
// does: "Invoke Error", "Init Error", "Uncaught Exception" or "Unhandled
// Promise Rejection".
function logError(label, err) {
  const e = err instanceof Error ? err : new Error(String(err));
  if (LOG_JSON) {
    console.error(e);
  } else {
    console.error(label, formatted(e));
  }
}

// lineLevel is the level Lambda's platform gives a line of output.
function lineLevel(line) {
  if (line.trimStart().startsWith('{')) {
    try {
      const doc = JSON.parse(line);
      if (doc !== null && typeof doc === 'object' && !Array.isArray(doc)) {
        const name = String(doc.level ?? '').toUpperCase();
        return LEVELS[{ WARNING: 'WARN', CRITICAL: 'FATAL' }[name] ?? name] ?? LEVELS.INFO;
      }
    } catch {
      // not JSON: INFO
    }
  }
  return LEVELS.INFO;
}

// filterLines makes stream pass on only the lines of at least level least;
// a partial line waits for its end.
function filterLines(stream, least) {
  const write = stream.write.bind(stream);
  let pending = '';
  stream.write = (chunk, encoding, cb) => {
    if (typeof encoding === 'function') {
      [cb, encoding] = [encoding, undefined];
    }
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    const lines = (pending + text).split('\n');
    pending = lines.pop();
    const kept = lines.filter((l) => lineLevel(l) >= least);
    if (kept.length > 0) {
      return write(kept.join('\n') + '\n', cb);
    }
    if (cb) {
      process.nextTick(cb);
    }
    return true;
  };
}

// filterOutput filters, in the JSON format with a level, what the function
// writes to process.stdout and process.stderr.
function filterOutput() {
  if (LOG_JSON && LEVELS[LOG_LEVEL]) {
    filterLines(process.stdout, LEVELS[LOG_LEVEL]);
    filterLines(process.stderr, LEVELS[LOG_LEVEL]);
  }
}

// RuntimeClient talks to the Runtime API over one kept connection.
class RuntimeClient {
  constructor(addr) {
    const i = addr.lastIndexOf(':');
    this.host = addr.slice(0, i) || '127.0.0.1';
    this.port = Number(addr.slice(i + 1));
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  }

  request(method, p, body, headers) {
    return new Promise((resolve, reject) => {
      const req = http.request(
        { host: this.host, port: this.port, method, path: API_PREFIX + p, agent: this.agent, headers: headers || {} },
        (res) => {
          const chunks = [];
          res.on('data', (c) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  async next() {
    const r = await this.request('GET', '/invocation/next');
    if (r.status !== 200) {
      throw new Error(`GET /invocation/next: status ${r.status}: ${r.body.toString('utf8', 0, 200)}`);
    }
    return r;
  }

  async post(p, body, headers) {
    const buf = Buffer.from(body);
    const r = await this.request('POST', p, buf, { ...headers, 'Content-Length': buf.length });
    if (r.status !== 202) {
      console.warn(`POST ${p}: status ${r.status}: ${r.body.toString('utf8')}`);
    }
    return r.status;
  }

  response(requestId, payload) {
    return this.post(`/invocation/${requestId}/response`, payload, { 'Content-Type': 'application/json' });
  }

  // streamResponse opens a streamed /response: it returns the request
  // (write the body to it, end it, with trailers for an error) and a
  // promise of the answer's status.
  streamResponse(requestId, contentType) {
    let req;
    const done = new Promise((resolve, reject) => {
      req = http.request(
        {
          host: this.host, port: this.port, method: 'POST', agent: this.agent,
          path: `${API_PREFIX}/invocation/${requestId}/response`,
          headers: {
            'Content-Type': contentType,
            'Lambda-Runtime-Function-Response-Mode': 'streaming',
            'Transfer-Encoding': 'chunked',
            Trailer: `${ERROR_TYPE_HEADER}, ${ERROR_BODY_HEADER}`,
          },
        },
        (res) => {
          const chunks = [];
          res.on('data', (c) => chunks.push(c));
          res.on('end', () => {
            if (res.statusCode !== 202) {
              console.warn(`POST streamed response: status ${res.statusCode}: ${Buffer.concat(chunks).toString('utf8')}`);
            }
            resolve(res.statusCode);
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
    });
    req.flushHeaders();
    return { req, done };
  }

  error(requestId, doc) {
    return this.post(`/invocation/${requestId}/error`, JSON.stringify(doc), errorHeaders(doc));
  }

  initError(doc) {
    return this.post('/init/error', JSON.stringify(doc), errorHeaders(doc));
  }
}

// ResponseStream is a streaming handler's responseStream: what is written
// to it goes to the Runtime API at once. The request is opened at the first
// write (or when the handler ends), so that a handler that fails before
// writing anything posts an ordinary /error.
class ResponseStream extends Writable {
  constructor(client, requestId) {
    super();
    this.client = client;
    this.requestId = requestId;
    this.contentType = 'application/octet-stream';
    this.post = null; // {req, done} once opened
  }

  setContentType(contentType) {
    this.contentType = contentType;
  }

  open() {
    if (this.post === null) {
      this.post = this.client.streamResponse(this.requestId, this.contentType);
    }
    return this.post;
  }

  _write(chunk, encoding, cb) {
    this.open().req.write(chunk, cb);
  }
}

// HttpResponseStream is Lambda's: from() starts a function URL style answer
// with its status, headers and cookies (a JSON prelude and 8 NUL bytes).
class HttpResponseStream {
  static from(underlyingStream, prelude) {
    underlyingStream.setContentType(HTTP_INTEGRATION_TYPE);
    underlyingStream.write(Buffer.concat([Buffer.from(JSON.stringify(prelude || {})), Buffer.alloc(8)]));
    return underlyingStream;
  }
}

// installGlobals provides Lambda's global awslambda object.
function installGlobals() {
  globalThis.awslambda = {
    streamifyResponse(handler) {
      handler[STREAMING] = STREAM_RESPONSE;
      return handler;
    },
    HttpResponseStream,
  };
}

// runStreaming runs a streaming handler and posts its answer: the stream,
// ended if the handler did not end it, or its error (in the trailers once
// the stream has begun).
async function runStreaming(client, fn, requestId, event, context) {
  const rs = new ResponseStream(client, requestId);
  let error;
  try {
    await fn(event, rs, context);
    if (!rs.writableEnded) {
      rs.end();
    }
    await finished(rs);
  } catch (err) {
    error = err;
  }
  current = null;
  if (error === undefined) {
    const { req, done } = rs.open();
    req.end();
    await done;
    return;
  }
  const doc = errorDoc(error);
  logError('Invoke Error', error);
  if (rs.post === null) {
    await client.error(requestId, doc);
    return;
  }
  const { req, done } = rs.post;
  req.addTrailers({
    [ERROR_TYPE_HEADER]: doc.errorType,
    [ERROR_BODY_HEADER]: Buffer.from(JSON.stringify(doc)).toString('base64'),
  });
  req.end();
  await done;
}

function errorHeaders(doc) {
  return { 'Content-Type': 'application/json', [ERROR_TYPE_HEADER]: doc.errorType };
}

// errorDoc is Lambda's error document for a thrown or passed error.
function errorDoc(err) {
  if (err instanceof Fault) {
    return { errorType: err.errorType, errorMessage: err.message, stackTrace: err.faultStack };
  }
  if (err instanceof Error) {
    const stack = typeof err.stack === 'string' ? err.stack.split('\n') : [];
    return { errorType: err.name || 'Error', errorMessage: err.message, stackTrace: stack };
  }
  let message;
  try {
    message = typeof err === 'object' && err !== null ? JSON.stringify(err) : String(err);
  } catch {
    message = String(err);
  }
  return { errorType: typeof err, errorMessage: message, stackTrace: [] };
}

// splitHandler splits "dir/file.a.b" into ["dir/", "file", "a.b"].
function splitHandler(handler) {
  const base = path.basename(handler);
  const root = handler.slice(0, handler.length - base.length);
  const m = /^([^.]+)\.(.+)$/.exec(base);
  if (!m) {
    throw new Fault('Runtime.MalformedHandlerName', `Bad handler '${handler}'`);
  }
  return [root, m[1], m[2]];
}

// isModuleScope reports whether the nearest package.json above dir says
// "type": "module".
function isModuleScope(dir) {
  for (;;) {
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj)) {
      try {
        return JSON.parse(fs.readFileSync(pj, 'utf8')).type === 'module';
      } catch {
        return false;
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) {
      return false;
    }
    dir = parent;
  }
}

async function importFile(file) {
  return import(pathToFileURL(file).href);
}

// loadFile loads a module file the way Node would for its extension and
// package scope.
async function loadFile(file, ext) {
  if (ext === '.mjs' || (ext === '.js' && isModuleScope(path.dirname(file)))) {
    return importFile(file);
  }
  const require = createRequire(file);
  try {
    return require(file);
  } catch (err) {
    if (err && err.code === 'ERR_REQUIRE_ESM') {
      return importFile(file);
    }
    throw err;
  }
}

async function loadModule(taskRoot, moduleRoot, name) {
  const base = path.resolve(taskRoot, moduleRoot, name);
  for (const ext of ['.js', '.mjs', '.cjs']) {
    if (fs.existsSync(base + ext)) {
      return loadFile(base + ext, ext);
    }
  }
  // A package or directory name, resolved as require() would.
  const require = createRequire(path.join(taskRoot, moduleRoot, 'index.js'));
  let resolved;
  try {
    resolved = require.resolve(name.startsWith('.') ? name : `./${name}`);
  } catch {
    try {
      resolved = require.resolve(name);
    } catch {
      throw new Fault('Runtime.ImportModuleError', `Error: Cannot find module '${name}'`);
    }
  }
  return loadFile(resolved, path.extname(resolved));
}

function isNotFound(err) {
  return err && (err.code === 'MODULE_NOT_FOUND' || err.code === 'ERR_MODULE_NOT_FOUND');
}

// loadHandler imports the handler's module and returns its function, or
// throws a Fault (or the user's own error, thrown while loading).
async function loadHandler(handler, taskRoot) {
  const [moduleRoot, name, handlerPath] = splitHandler(handler);
  let mod;
  try {
    mod = await loadModule(taskRoot, moduleRoot, name);
  } catch (err) {
    if (err instanceof Fault) {
      throw err;
    }
    if (err instanceof SyntaxError) {
      throw new Fault('Runtime.UserCodeSyntaxError', `${err.name}: ${err.message}`, splitStack(err));
    }
    if (isNotFound(err)) {
      throw new Fault('Runtime.ImportModuleError', `${err.name}: ${err.message}`, splitStack(err));
    }
    throw err;
  }
  let fn = mod;
  for (const key of handlerPath.split('.')) {
    fn = fn == null ? undefined : fn[key];
  }
  if (fn === undefined && mod && mod.default) {
    // A CommonJS module loaded with import(): its exports are the default.
    fn = mod.default;
    for (const key of handlerPath.split('.')) {
      fn = fn == null ? undefined : fn[key];
    }
  }
  if (fn === undefined) {
    throw new Fault('Runtime.HandlerNotFound', `${moduleRoot}${name}.${handlerPath} is undefined or not exported`);
  }
  if (typeof fn !== 'function') {
    throw new Fault('Runtime.HandlerNotFound', `${moduleRoot}${name}.${handlerPath} is not a function`);
  }
  return fn;
}

function splitStack(err) {
  return typeof err.stack === 'string' ? err.stack.split('\n') : [];
}

function parseJSONHeader(v) {
  if (!v) {
    return undefined;
  }
  try {
    return JSON.parse(v);
  } catch {
    return undefined;
  }
}

// makeContext builds the context object handlers receive.
function makeContext(headers) {
  const env = process.env;
  const deadline = Number(headers['lambda-runtime-deadline-ms'] || 0);
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
    invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'],
    memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    awsRequestId: headers['lambda-runtime-aws-request-id'],
    logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
    clientContext: parseJSONHeader(headers['lambda-runtime-client-context']),
    identity: parseJSONHeader(headers['lambda-runtime-cognito-identity']),
    getRemainingTimeInMillis() {
      return Math.max(deadline - Date.now(), 0);
    },
  };
}

// run calls the handler and resolves with {error} or {value}, whichever of
// its returned promise, callback or context.done/succeed/fail comes first.
//
// Like Lambda, an answer through the callback waits for the event loop to go
// empty when context.callbackWaitsForEmptyEventLoop is true, and a handler
// that neither returns a promise nor calls back answers null once the loop
// is empty. 'beforeExit' tells: the runtime's own idle kept-alive socket is
// unreferenced by Node's agent, so it does not keep the loop busy.
function run(fn, event, context) {
  return new Promise((resolve) => {
    const waiting = [];
    const onEmptyLoop = (f) => {
      waiting.push(f);
      process.once('beforeExit', f);
    };
    let settled = false;
    const finish = (outcome) => {
      if (settled) {
        return;
      }
      settled = true;
      for (const f of waiting) {
        process.removeListener('beforeExit', f);
      }
      resolve(outcome);
    };
    let answered = false;
    const callback = (err, value) => {
      if (answered) {
        return;
      }
      answered = true;
      const outcome = err !== undefined && err !== null ? { error: err } : { value };
      if (context.callbackWaitsForEmptyEventLoop) {
        onEmptyLoop(() => finish(outcome));
      } else {
        finish(outcome);
      }
    };
    context.done = callback;
    context.succeed = (value) => callback(null, value);
    context.fail = (err) => callback(err === undefined || err === null ? 'handled' : err);
    let result;
    try {
      result = fn(event, context, callback);
    } catch (err) {
      finish({ error: err });
      return;
    }
    if (result && typeof result.then === 'function') {
      result.then(
        (value) => finish({ value }),
        (err) => finish({ error: err === undefined || err === null ? new Error('handler rejected') : err }),
      );
    } else {
      onEmptyLoop(() => {
        if (!answered) {
          answered = true;
          finish({ value: null });
        }
      });
    }
  });
}

function serialize(value) {
  let s;
  try {
    s = JSON.stringify(value === undefined ? null : value);
  } catch (err) {
    throw new Fault('Runtime.MarshalError', `Unable to stringify response body: ${err.message}`);
  }
  return s === undefined ? 'null' : s;
}

let current = null; // request id of the invocation running, for crash reports

async function handle(client, fn, r) {
  if (process.env[FC_ENV]) {
    return fcHandle(client, fn, r);
  }
  const requestId = r.headers['lambda-runtime-aws-request-id'] || '';
  const traceId = r.headers['lambda-runtime-trace-id'];
  if (traceId) {
    process.env._X_AMZN_TRACE_ID = traceId;
  } else {
    delete process.env._X_AMZN_TRACE_ID;
  }
  current = requestId;
  globalThis[REQUEST_ID] = requestId;
  let outcome;
  try {
    let event;
    try {
      event = r.body.length ? JSON.parse(r.body.toString('utf8')) : {};
    } catch (err) {
      throw new Fault('Runtime.UnmarshalError', `Unable to parse input as JSON: ${err.message}`);
    }
    if (fn[STREAMING] === STREAM_RESPONSE) {
      await runStreaming(client, fn, requestId, event, makeContext(r.headers));
      return;
    }
    outcome = await run(fn, event, makeContext(r.headers));
    if (!('error' in outcome)) {
      outcome.payload = serialize(outcome.value);
    }
  } catch (err) {
    outcome = { error: err };
  }
  current = null;
  if ('error' in outcome) {
    const doc = errorDoc(outcome.error);
    logError('Invoke Error', outcome.error);
    await client.error(requestId, doc);
  } else {
    await client.response(requestId, outcome.payload);
  }
}

// Function Compute's conventions (internal/runtimes' FCEnv, set for functions
// made in the Function Compute dialect): handler(event, context, callback)
// gets the payload as a Buffer and Function Compute's context; its answer is
// returned as it is (a string as UTF-8, a Buffer), anything else as JSON; the
// initializer (FC_INITIALIZER_HANDLER), initializer(context, callback) or
// async, runs with its own context and timeout when the instance starts,
// before its first invocation (fcInitialize).
const FC_ENV = '_NIMBUS_FC';

function fcContext(headers) {
  const env = process.env;
  const deadline = Number(headers['lambda-runtime-deadline-ms'] || 0);
  const version = env.AWS_LAMBDA_FUNCTION_VERSION || '';
  const qualifier = version === '' || version === '$LATEST' ? 'LATEST' : version;
  return {
    requestId: headers['lambda-runtime-aws-request-id'] || '',
    credentials: {
      accessKeyId: env.ALIBABA_CLOUD_ACCESS_KEY_ID || '',
      accessKeySecret: env.ALIBABA_CLOUD_ACCESS_KEY_SECRET || '',
      securityToken: env.ALIBABA_CLOUD_SECURITY_TOKEN || '',
    },
    function: {
      name: env.FC_FUNCTION_NAME || '',
      handler: env.FC_FUNCTION_HANDLER || '',
      memory: Number(env.FC_FUNCTION_MEMORY_SIZE || 0),
      timeout: Number(env._NIMBUS_FC_TIMEOUT || 0),
      initializer: env.FC_INITIALIZER_HANDLER || '',
      initializationTimeout: Number(env.FC_INITIALIZATION_TIMEOUT || 0),
    },
    service: { name: '', logProject: '', logStore: '', qualifier, versionId: qualifier },
    region: env.FC_REGION || '',
    accountId: (headers['lambda-runtime-invoked-function-arn'] || '').split(':')[4] || '',
    logger: console,
    getRemainingTimeInMillis() {
      return Math.max(deadline - Date.now(), 0);
    },
  };
}

function fcPayload(value) {
  if (value === undefined || value === null) {
    return Buffer.alloc(0);
  }
  if (Buffer.isBuffer(value) || typeof value === 'string') {
    return value;
  }
  return serialize(value);
}

async function fcHandle(client, fn, r) {
  const requestId = r.headers['lambda-runtime-aws-request-id'] || '';
  current = requestId;
  globalThis[REQUEST_ID] = requestId;
  let outcome;
  try {
    const context = fcContext(r.headers);
    outcome = await run(fn, r.body, context);
    if (!('error' in outcome)) {
      outcome.payload = fcPayload(outcome.value);
    }
  } catch (err) {
    outcome = { error: err };
  }
  current = null;
  if ('error' in outcome) {
    logError('Invoke Error', outcome.error);
    await client.error(requestId, errorDoc(outcome.error));
  } else {
    await client.response(requestId, outcome.payload);
  }
}

// fcInitialize runs Function Compute's initializer (FC_INITIALIZER_HANDLER)
// with its context as the instance starts, within its own timeout
// (FC_INITIALIZATION_TIMEOUT, 3 s when unset); it throws a Fault when the
// initializer fails or runs out of time, which fails the instance's start
// (/init/error), so that the next invocation starts an instance that runs
// it again. The engine bounds the start by the same timeout, which stops
// an initializer that never yields the event loop.
async function fcInitialize(taskRoot) {
  const name = process.env.FC_INITIALIZER_HANDLER;
  if (!process.env[FC_ENV] || !name) {
    return;
  }
  const init = await loadHandler(name, taskRoot);
  const seconds = Number(process.env.FC_INITIALIZATION_TIMEOUT || 0) || 3;
  const context = fcContext({ 'lambda-runtime-aws-request-id': crypto.randomUUID(), 'lambda-runtime-deadline-ms': String(Date.now() + seconds * 1000) });
  let timer;
  const expired = new Promise((resolve) => {
    timer = setTimeout(() => resolve({ timedOut: true }), seconds * 1000);
  });
  const outcome = await Promise.race([run((_, ctx, cb) => init(ctx, cb), null, context), expired]);
  clearTimeout(timer);
  if (outcome.timedOut) {
    throw new Fault('InitializationError', `Initializer timed out after ${seconds} seconds`);
  }
  if ('error' in outcome) {
    const doc = errorDoc(outcome.error);
    throw new Fault('InitializationError', `Initializer failed: ${doc.errorType}: ${doc.errorMessage}`, doc.stackTrace);
  }
}

// fcOnStop runs Function Compute's preStop handler (FC_PRESTOP_HANDLER),
// preStop(context, callback) or async, when the platform stops the
// instance (SIGTERM), then exits.
function fcOnStop() {
  const name = process.env.FC_PRESTOP_HANDLER;
  if (!process.env[FC_ENV] || !name) {
    return;
  }
  process.once('SIGTERM', async () => {
    try {
      const stop = await loadHandler(name, process.env.LAMBDA_TASK_ROOT || process.cwd());
      const timeoutMs = 1000 * Number(process.env.FC_PRESTOP_TIMEOUT || 3);
      const outcome = await run((_, ctx, cb) => stop(ctx, cb), null, fcContext({ 'lambda-runtime-deadline-ms': String(Date.now() + timeoutMs) }));
      if ('error' in outcome) {
        logError('PreStop Error', outcome.error);
      }
    } catch (err) {
      logError('PreStop Error', err);
    }
    process.exit(0);
  });
}

// crash reports an error that escaped the handler and exits.
async function crash(client, label, err, doc) {
  logError(label, err);
  try {
    if (current !== null) {
      await client.error(current, doc);
    } else if (!initDone) {
      await client.initError(doc);
    }
  } finally {
    process.exit(129);
  }
}

let initDone = false;

// readLogSettings reads the log format and level from the environment.
function readLogSettings() {
  LOG_JSON = (process.env.AWS_LAMBDA_LOG_FORMAT || '').toUpperCase() === 'JSON';
  LOG_LEVEL = (process.env.AWS_LAMBDA_LOG_LEVEL || '').toUpperCase();
}

// becomeInstance: started as a zygote (internal/sandbox's Zygote: Node
// started and this module loaded before the function is known), takes its
// instance from the socket on stdin: the environment and the working
// directory (its stdout and stderr already lead to the platform, which
// gives them to the instance). It writes "+" when ready, reads the
// length-prefixed JSON, writes "." and closes the socket; on failure it
// writes {"op", "errno", "msg"} and exits.
function becomeInstance() {
  return new Promise((resolve) => {
    const sock = new net.Socket({ fd: 0, readable: true, writable: true });
    const gone = () => process.exit(1); // the platform went away
    sock.on('end', gone);
    sock.on('error', gone);
    let data = Buffer.alloc(0);
    const onData = (chunk) => {
      data = Buffer.concat([data, chunk]);
      if (data.length < 4 || data.length < 4 + data.readUInt32BE(0)) return;
      sock.off('data', onData);
      sock.off('end', gone);
      sock.pause();
      sock.write('.');
      try {
        const cfg = JSON.parse(data.subarray(4, 4 + data.readUInt32BE(0)).toString());
        for (const k of Object.keys(process.env)) delete process.env[k];
        for (const kv of cfg.env) {
          const i = kv.indexOf('=');
          if (i > 0) process.env[kv.slice(0, i)] = kv.slice(i + 1);
        }
        process.chdir(cfg.dir);
      } catch (err) {
        sock.end(JSON.stringify({ op: 'zygote', errno: 0, msg: String(err && err.message) }), () => process.exit(1));
        return;
      }
      sock.end(() => {
        sock.destroy(); // libuv never closes fds 0 to 2 itself
        fs.closeSync(0);
        fs.openSync('/dev/null', 'r'); // fd 0, as any instance's standard input
        resolve();
      });
    };
    sock.on('data', onData);
    sock.write('+');
  });
}

async function main() {
  if (process.env[ZYGOTE_ENV]) await becomeInstance();
  readLogSettings();
  process.env.LAMBDA_RUNTIME_DIR = path.dirname(THIS_FILE);
  const taskRoot = process.env.LAMBDA_TASK_ROOT || process.cwd();
  const client = new RuntimeClient(process.env.AWS_LAMBDA_RUNTIME_API || '');
  patchConsole();
  filterOutput();
  installGlobals();
  process.on('uncaughtException', (err) => crash(client, 'Uncaught Exception', err, errorDoc(err)));
  process.on('unhandledRejection', (reason) => {
    const doc = errorDoc(reason);
    const rejection = { ...doc, errorType: 'Runtime.UnhandledPromiseRejection', errorMessage: `${doc.errorType}: ${doc.errorMessage}` };
    crash(client, 'Unhandled Promise Rejection', reason, rejection);
  });
  let fn;
  try {
    fn = await loadHandler(process.env._HANDLER || '', taskRoot);
    await fcInitialize(taskRoot);
  } catch (err) {
    const doc = errorDoc(err);
    logError('Init Error', err);
    await client.initError(doc);
    process.exit(1);
  }
  initDone = true;
  fcOnStop();
  for (;;) {
    const r = await client.next();
    await handle(client, fn, r);
  }
}

// Not a top-level await: the event loop must be able to go empty (see run).
main().catch((err) => {
  console.error(`[ERROR] runtime: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
