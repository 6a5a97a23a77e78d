// Function Compute 3.0's official Node SDK (@alicloud/fc20230330), unmodified
// but for its endpoint, against a Nimbus node. internal/api's TestFCSDK
// starts the node and runs this with node --test, passing:
//   FC_ENDPOINT (host:port), FC_ACCESS_KEY_ID, FC_ACCESS_KEY_SECRET (the
//   node's admin key), FC_PY_ZIP and FC_CUSTOM_ZIP (paths of the packages),
//   FC_PY_RUNTIME (a Python runtime the node has), FC_PREFIX (unique names).
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const FC = require('@alicloud/fc20230330');
const { $OpenApiUtil, OpenApiUtil } = require('@alicloud/openapi-core');
const crypto = require('node:crypto');

const env = (k) => { const v = process.env[k]; if (!v) throw new Error(`${k} is not set: run this through go test -run TestFCSDK ./internal/api/`); return v; };
const endpoint = env('FC_ENDPOINT');
// client is the SDK's client; signatureAlgorithm 'v2' makes it sign with the
// older ROA signature (acs <key>:<HMAC-SHA1>) instead of ACS3.
const client = (secret = env('FC_ACCESS_KEY_SECRET'), signatureAlgorithm = undefined) => new FC.default(new $OpenApiUtil.Config({
  accessKeyId: env('FC_ACCESS_KEY_ID'), accessKeySecret: secret, endpoint, protocol: 'http', regionId: 'cn-hangzhou', signatureAlgorithm,
}));
const fc = client();
const prefix = env('FC_PREFIX');
const py = `${prefix}-py`, custom = `${prefix}-custom`;
const zip = (p) => fs.readFileSync(p).toString('base64');
const readAll = async (s) => { const parts = []; for await (const c of s) parts.push(Buffer.from(c)); return Buffer.concat(parts); };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// signedFetch calls url signed with ACS3-HMAC-SHA256 by the SDK's own
// signing code, as a caller of an http trigger of authType function does.
function signedFetch(url, method, body, secret = env('FC_ACCESS_KEY_SECRET')) {
  const u = new URL(url);
  const hash = crypto.createHash('sha256').update(body).digest('hex');
  const headers = { host: u.host, 'content-type': 'text/plain', 'x-acs-content-sha256': hash,
    'x-acs-date': new Date().toISOString().replace(/\.\d+Z$/, 'Z'), 'x-acs-signature-nonce': crypto.randomUUID() };
  headers.Authorization = OpenApiUtil.getAuthorization({ pathname: u.pathname, method, query: {}, headers },
    'ACS3-HMAC-SHA256', hash, env('FC_ACCESS_KEY_ID'), secret);
  delete headers.host; // fetch sends it
  return fetch(url, { method, body, headers });
}

async function rejects(p, status, code) {
  await assert.rejects(p, (e) => {
    assert.equal(e.statusCode, status, `status of ${e.message}`);
    assert.equal(e.code, code, `code of ${e.message}`);
    assert.match(e.requestId || e.data?.RequestId || '', /^[0-9a-f-]{36}$/, 'RequestId');
    return true;
  });
}

async function active(name) {
  for (let i = 0; i < 200; i++) {
    const f = (await fc.getFunction(name, new FC.GetFunctionRequest({}))).body;
    if (f.state === 'Active' && f.lastUpdateStatus === 'Successful') return f;
    assert.notEqual(f.state, 'Failed', f.stateReason);
    await sleep(50);
  }
  throw new Error(`${name} never became Active`);
}

async function invoke(name, body, headers = {}, qualifier) {
  return fc.invokeFunctionWithOptions(name, new FC.InvokeFunctionRequest({ body: require('node:stream').Readable.from([Buffer.from(body)]), qualifier }),
    new FC.InvokeFunctionHeaders(headers), new (require('@darabonba/typescript').RuntimeOptions)({}));
}

test('Function Compute SDK against Nimbus', async (t) => {
  await t.test('CreateFunction (Python, custom) and GetFunction', async () => {
    const out = await fc.createFunction(new FC.CreateFunctionRequest({ body: new FC.CreateFunctionInput({
      functionName: py, runtime: env('FC_PY_RUNTIME'), handler: 'index.handler', memorySize: 512, cpu: 0.5, timeout: 30,
      environmentVariables: { GREETING: 'hi' }, description: 'python via fc sdk',
      code: new FC.InputCodeLocation({ zipFile: zip(env('FC_PY_ZIP')) }),
    }) }));
    assert.equal(out.statusCode, 200);
    assert.equal(out.body.functionName, py);
    assert.equal(out.body.cpu, 0.5);
    assert.equal(out.body.memorySize, 512);
    assert.match(out.body.codeChecksum, /^\d+$/);
    assert.equal(out.headers['x-fc-code-checksum'], out.body.codeChecksum);
    assert.equal(out.body.functionArn.endsWith(`:functions/${py}`), true);
    const c = await fc.createFunction(new FC.CreateFunctionRequest({ body: new FC.CreateFunctionInput({
      functionName: custom, runtime: 'custom.debian10', handler: 'index.handler', memorySize: 256,
      customRuntimeConfig: new FC.CustomRuntimeConfig({ port: 9000 }),
      code: new FC.InputCodeLocation({ zipFile: zip(env('FC_CUSTOM_ZIP')) }),
    }) }));
    assert.equal(c.body.runtime, 'custom.debian10');
    assert.equal(c.body.cpu, 0.1, 'the default cpu of 256 MB');
    const got = await active(py);
    assert.equal(got.environmentVariables.GREETING, 'hi');
    assert.equal(got.codeChecksum, out.body.codeChecksum);
    await active(custom);
    const list = await fc.listFunctions(new FC.ListFunctionsRequest({ prefix }));
    assert.deepEqual(list.body.functions.map((f) => f.functionName).sort(), [custom, py].sort());
  });

  await t.test('bad inputs', async () => {
    await rejects(fc.getFunction(`${prefix}-nope`, new FC.GetFunctionRequest({})), 404, 'FunctionNotFound');
    const body = (o) => new FC.CreateFunctionRequest({ body: new FC.CreateFunctionInput({
      functionName: py, runtime: env('FC_PY_RUNTIME'), handler: 'index.handler',
      code: new FC.InputCodeLocation({ zipFile: zip(env('FC_PY_ZIP')) }), ...o }) });
    await rejects(fc.createFunction(body({})), 409, 'FunctionAlreadyExists');
    const fresh = (o) => body({ functionName: `${prefix}-bad`, ...o });
    await rejects(fc.createFunction(fresh({ memorySize: 512, cpu: 2 })), 400, 'InvalidArgument'); // 1:4 GB: below 1:1
    await rejects(fc.createFunction(fresh({ memorySize: 4096, cpu: 0.5 })), 400, 'InvalidArgument'); // 8 GB per vCPU
    await rejects(fc.createFunction(fresh({ memorySize: 1000 })), 400, 'InvalidArgument'); // not a multiple of 64
    await rejects(fc.createFunction(fresh({ memorySize: 1024, cpu: 0.33 })), 400, 'InvalidArgument'); // not a 0.05 step
    await rejects(fc.createFunction(fresh({ code: new FC.InputCodeLocation({}) })), 400, 'InvalidArgument'); // no code
    await rejects(fc.createFunction(fresh({ runtime: 'java11' })), 400, 'InvalidArgument');
    await rejects(fc.createFunction(fresh({ diskSize: 1024 })), 400, 'InvalidArgument');
    await rejects(invoke(py, '{}', { xFcInvocationType: 'Later' }), 400, 'InvalidArgument');
    await rejects(invoke(py, 'x'.repeat(129 << 10), { xFcInvocationType: 'Async' }), 413, 'EntityTooLarge');
    await rejects(client('wrong-secret').getFunction(py, new FC.GetFunctionRequest({})), 403, 'SignatureNotMatch');
    await rejects(client('wrong-secret', 'v2').getFunction(py, new FC.GetFunctionRequest({})), 403, 'SignatureNotMatch');
  });

  await t.test('the older ROA signature (signatureAlgorithm v2)', async () => {
    const old = client(undefined, 'v2');
    assert.equal((await old.getFunction(py, new FC.GetFunctionRequest({}))).body.functionName, py);
    const list = await old.listFunctions(new FC.ListFunctionsRequest({ prefix }));
    assert.ok(list.body.functions.some((f) => f.functionName === py));
  });

  await t.test('InvokeFunction Sync, with the log tail', async () => {
    const out = await invoke(py, '{"n":1}', { xFcLogType: 'Tail' });
    assert.equal(out.statusCode, 200);
    assert.deepEqual(JSON.parse((await readAll(out.body)).toString()), { echo: { n: 1 }, greeting: 'hi' });
    assert.match(out.headers['x-fc-request-id'], /^[0-9a-f-]{36}$/);
    assert.match(Buffer.from(out.headers['x-fc-log-result'], 'base64').toString(), /handled 1/);
    const cu = await invoke(custom, 'raw bytes');
    assert.equal((await readAll(cu.body)).toString(), 'custom:raw bytes');
    const bad = await invoke(py, '{"fail":true}');
    assert.equal(bad.statusCode, 200);
    assert.equal(bad.headers['x-fc-error-type'], 'UnhandledInvocationError');
    assert.match((await readAll(bad.body)).toString(), /asked to fail/);
  });

  await t.test('InvokeFunction Async, ListAsyncTasks, GetAsyncTask, StopAsyncTask', async () => {
    const taskId = `${prefix}-task1`;
    const a = await invoke(py, '{"n":2}', { xFcInvocationType: 'Async', xFcAsyncTaskId: taskId });
    assert.equal(a.statusCode, 202);
    assert.equal(a.headers['x-fc-async-task-id'], taskId);
    const again = await invoke(py, '{"n":2}', { xFcInvocationType: 'Async', xFcAsyncTaskId: taskId });
    assert.equal(again.headers['x-fc-async-task-id'], taskId, 'idempotent');
    let task;
    for (let i = 0; i < 200; i++) {
      task = (await fc.getAsyncTask(py, taskId, new FC.GetAsyncTaskRequest({}))).body;
      if (task.status === 'Succeeded') break;
      await sleep(50);
    }
    assert.equal(task.status, 'Succeeded');
    assert.match(task.returnPayload, /"n": 2/);
    const slow = await invoke(py, '{"sleep":20}', { xFcInvocationType: 'Async' });
    const slowId = slow.headers['x-fc-async-task-id'];
    for (let i = 0; i < 200; i++) {
      const s = (await fc.getAsyncTask(py, slowId, new FC.GetAsyncTaskRequest({}))).body;
      if (s.status === 'Running') break;
      await sleep(50);
    }
    const stop = await fc.stopAsyncTask(py, slowId, new FC.StopAsyncTaskRequest({}));
    assert.ok(stop.statusCode >= 200 && stop.statusCode < 300, `StopAsyncTask ${stop.statusCode}`);
    let stopped;
    for (let i = 0; i < 200; i++) {
      stopped = (await fc.getAsyncTask(py, slowId, new FC.GetAsyncTaskRequest({}))).body;
      if (stopped.status === 'Stopped') break;
      await sleep(50);
    }
    assert.equal(stopped.status, 'Stopped');
    const list = await fc.listAsyncTasks(py, new FC.ListAsyncTasksRequest({}));
    assert.deepEqual(list.body.tasks.map((x) => x.taskId).sort(), [taskId, slowId].sort());
    await rejects(fc.getAsyncTask(py, 'no-such-task', new FC.GetAsyncTaskRequest({})), 404, 'AsyncTaskNotFound');
  });

  await t.test('async invoke config and concurrency', async () => {
    const put = await fc.putAsyncInvokeConfig(py, new FC.PutAsyncInvokeConfigRequest({ body: new FC.PutAsyncInvokeConfigInput({
      maxAsyncRetryAttempts: 1, maxAsyncEventAgeInSeconds: 600, asyncTask: true,
      destinationConfig: new FC.DestinationConfig({ onFailure: new FC.Destination({ destination: `acs:fc:cn-hangzhou:000000000000:functions/${custom}` }) }),
    }) }));
    assert.equal(put.body.maxAsyncRetryAttempts, 1);
    const got = await fc.getAsyncInvokeConfig(py, new FC.GetAsyncInvokeConfigRequest({}));
    assert.equal(got.body.maxAsyncEventAgeInSeconds, 600);
    assert.match(got.body.destinationConfig.onFailure.destination, new RegExp(`:functions/${custom}$`));
    await fc.deleteAsyncInvokeConfig(py, new FC.DeleteAsyncInvokeConfigRequest({}));
    await rejects(fc.getAsyncInvokeConfig(py, new FC.GetAsyncInvokeConfigRequest({})), 404, 'AsyncConfigNotExist');
    const cc = await fc.putConcurrencyConfig(py, new FC.PutConcurrencyConfigRequest({ body: new FC.PutConcurrencyInput({ reservedConcurrency: 3 }) }));
    assert.equal(cc.body.reservedConcurrency, 3);
    assert.equal((await fc.getConcurrencyConfig(py)).body.reservedConcurrency, 3);
    await fc.deleteConcurrencyConfig(py);
    await rejects(fc.getConcurrencyConfig(py), 404, 'ConcurrencyConfigNotFound');
  });

  await t.test('PutProvisionConfig, GetProvisionConfig, ListProvisionConfigs, DeleteProvisionConfig', async () => {
    const put = await fc.putProvisionConfig(py, new FC.PutProvisionConfigRequest({ qualifier: 'LATEST',
      body: new FC.PutProvisionConfigInput({ target: 1, alwaysAllocateCPU: false }) }));
    assert.equal(put.body.target, 1);
    assert.match(put.body.functionArn, new RegExp(`:functions/${py}$`));
    let got;
    for (let i = 0; i < 400; i++) {
      got = (await fc.getProvisionConfig(py, new FC.GetProvisionConfigRequest({ qualifier: 'LATEST' }))).body;
      if (got.current === 1) break;
      await sleep(50);
    }
    assert.equal(got.current, 1, 'the warm instance came up');
    const list = await fc.listProvisionConfigs(new FC.ListProvisionConfigsRequest({ functionName: py }));
    assert.deepEqual(list.body.provisionConfigs.map((c) => c.target), [1]);
    await rejects(fc.putProvisionConfig(py, new FC.PutProvisionConfigRequest({
      body: new FC.PutProvisionConfigInput({ target: 1, alwaysAllocateCPU: true }) })), 400, 'InvalidArgument');
    await fc.deleteProvisionConfig(py, new FC.DeleteProvisionConfigRequest({ qualifier: 'LATEST' }));
    await rejects(fc.getProvisionConfig(py, new FC.GetProvisionConfigRequest({})), 404, 'ProvisionConfigNotExist');
  });

  await t.test('CreateTrigger (http, timer), invoke through the URL, GetTrigger, ListTriggers, UpdateTrigger, DeleteTrigger', async () => {
    const h = await fc.createTrigger(custom, new FC.CreateTriggerRequest({ body: new FC.CreateTriggerInput({
      triggerName: 'web', triggerType: 'http', description: 'the URL',
      triggerConfig: JSON.stringify({ authType: 'anonymous', methods: ['GET', 'POST'] }),
    }) }));
    assert.equal(h.body.triggerName, 'web');
    assert.equal(h.body.triggerType, 'http');
    assert.match(h.body.triggerId, /^[0-9a-f-]{36}$/);
    assert.deepEqual(JSON.parse(h.body.triggerConfig), { authType: 'anonymous', methods: ['GET', 'POST'] });
    const url = h.body.httpTrigger.urlInternet;
    assert.equal(url, `http://${endpoint}/fn/${custom}/`);
    const res = await fetch(url, { method: 'POST', body: 'through the url' });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'custom:through the url');
    assert.equal((await fetch(url, { method: 'DELETE' })).status, 405, 'a method the trigger does not list');
    const tm = await fc.createTrigger(custom, new FC.CreateTriggerRequest({ body: new FC.CreateTriggerInput({
      triggerName: 'nightly', triggerType: 'timer',
      triggerConfig: JSON.stringify({ cronExpression: 'CRON_TZ=Asia/Shanghai 0 0 4 * * *', enable: true, payload: 'report' }),
    }) }));
    assert.deepEqual(JSON.parse(tm.body.triggerConfig), { cronExpression: 'CRON_TZ=Asia/Shanghai 0 0 4 * * *', enable: true, payload: 'report' });
    const got = await fc.getTrigger(custom, 'nightly');
    assert.equal(got.body.triggerId, tm.body.triggerId);
    const up = await fc.updateTrigger(custom, 'nightly', new FC.UpdateTriggerRequest({ body: new FC.UpdateTriggerInput({
      triggerConfig: JSON.stringify({ cronExpression: '@every 5m', enable: false }), description: 'paused' }) }));
    assert.deepEqual(JSON.parse(up.body.triggerConfig), { cronExpression: '@every 5m', enable: false, payload: '' });
    assert.equal(up.body.description, 'paused');
    const fnAuth = await fc.updateTrigger(custom, 'web', new FC.UpdateTriggerRequest({ body: new FC.UpdateTriggerInput({
      triggerConfig: JSON.stringify({ authType: 'function', methods: ['POST'] }) }) }));
    assert.equal(JSON.parse(fnAuth.body.triggerConfig).authType, 'function');
    assert.equal((await fetch(url, { method: 'POST', body: 'unsigned' })).status, 403, 'an unsigned call of a function-auth URL');
    assert.equal((await signedFetch(url, 'POST', 'signed', 'wrong')).status, 403, 'a bad signature');
    const signed = await signedFetch(url, 'POST', 'signed');
    assert.equal(signed.status, 200);
    assert.equal(await signed.text(), 'custom:signed');
    const list = await fc.listTriggers(custom, new FC.ListTriggersRequest({}));
    assert.deepEqual(list.body.triggers.map((x) => x.triggerName), ['nightly', 'web']);
    await rejects(fc.createTrigger(custom, new FC.CreateTriggerRequest({ body: new FC.CreateTriggerInput({
      triggerName: 'bucket', triggerType: 'oss', triggerConfig: '{}' }) })), 400, 'InvalidArgument');
    await rejects(fc.createTrigger(custom, new FC.CreateTriggerRequest({ body: new FC.CreateTriggerInput({
      triggerName: 'bad', triggerType: 'timer', triggerConfig: JSON.stringify({ cronExpression: '0 4 * * *' }) }) })), 400, 'InvalidArgument');
    for (const name of ['web', 'nightly']) assert.equal((await fc.deleteTrigger(custom, name)).statusCode, 204);
    await rejects(fc.getTrigger(custom, 'web'), 404, 'TriggerNotFound');
    assert.equal((await fetch(url, { method: 'POST', body: 'x' })).status, 404, 'the URL is gone');
  });

  await t.test('PublishFunctionVersion, ListFunctionVersions, aliases, InvokeFunction through an alias, DeleteFunctionVersion', async () => {
    const v1 = await fc.publishFunctionVersion(py, new FC.PublishFunctionVersionRequest({ body: new FC.PublishVersionInput({ description: 'v1' }) }));
    assert.equal(v1.body.versionId, '1');
    assert.equal(v1.body.description, 'v1');
    await fc.updateFunction(py, new FC.UpdateFunctionRequest({ body: new FC.UpdateFunctionInput({ environmentVariables: { GREETING: 'v2' } }) }));
    await active(py);
    const v2 = await fc.publishFunctionVersion(py, new FC.PublishFunctionVersionRequest({ body: new FC.PublishVersionInput({}) }));
    assert.equal(v2.body.versionId, '2');
    const vs = await fc.listFunctionVersions(py, new FC.ListFunctionVersionsRequest({}));
    assert.deepEqual(vs.body.versions.map((v) => v.versionId), ['2', '1']);
    const a = await fc.createAlias(py, new FC.CreateAliasRequest({ body: new FC.CreateAliasInput({
      aliasName: 'live', versionId: '1', description: 'prod', additionalVersionWeight: { 2: 0 } }) }));
    assert.equal(a.body.aliasName, 'live');
    assert.deepEqual(a.body.additionalVersionWeight, { 2: 0 });
    const greet = async (q) => JSON.parse((await readAll((await invoke(py, '{}', {}, q)).body)).toString()).greeting;
    assert.equal(await greet('live'), 'hi');
    assert.equal(await greet('2'), 'v2');
    const up = await fc.updateAlias(py, 'live', new FC.UpdateAliasRequest({ body: new FC.UpdateAliasInput({ versionId: '2', additionalVersionWeight: {} }) }));
    assert.equal(up.body.versionId, '2');
    assert.equal((await fc.getAlias(py, 'live')).body.description, 'prod');
    assert.equal(await greet('live'), 'v2');
    assert.deepEqual((await fc.listAliases(py, new FC.ListAliasesRequest({}))).body.aliases.map((x) => x.aliasName), ['live']);
    await rejects(fc.getAlias(py, 'nope'), 404, 'AliasNotFound');
    await rejects(fc.deleteFunctionVersion(py, '2'), 409, 'ResourceConflict');
    assert.equal((await fc.deleteAlias(py, 'live')).statusCode, 204);
    assert.equal((await fc.deleteFunctionVersion(py, '1')).statusCode, 204);
    await rejects(fc.deleteFunctionVersion(py, '1'), 404, 'VersionNotFound');
  });

  await t.test('ListInstances, TagResources, ListTagResources, UntagResources', async () => {
    await invoke(py, '{}');
    const inst = await fc.listInstances(py, new FC.ListInstancesRequest({}));
    assert.ok(inst.body.instances.length >= 1, 'the instance that just ran');
    assert.ok(inst.body.instances.every((i) => i.instanceId && i.status === 'Running'), JSON.stringify(inst.body));
    assert.ok(inst.body.instances.some((i) => i.versionId === 'LATEST'), JSON.stringify(inst.body));
    const latest = await fc.listInstances(py, new FC.ListInstancesRequest({ qualifier: 'LATEST' }));
    assert.ok(latest.body.instances.length >= 1 && latest.body.instances.every((i) => i.versionId === 'LATEST'), JSON.stringify(latest.body));
    await fc.tagResources(new FC.TagResourcesRequest({ body: new FC.TagResourcesInput({
      resourceType: 'FUNCTION', resourceId: [py, custom], tag: [new FC.Tag({ key: 'team', value: 'data' }), new FC.Tag({ key: 'env', value: 'prod' })] }) }));
    const tags = await fc.listTagResources(new FC.ListTagResourcesRequest({ resourceType: 'FUNCTION', resourceId: [py] }));
    assert.deepEqual(tags.body.tagResources.map((x) => `${x.tagKey}=${x.tagValue}`), ['env=prod', 'team=data']);
    assert.match(tags.body.tagResources[0].resourceId, new RegExp(`:functions/${py}$`));
    await fc.untagResources(new FC.UntagResourcesRequest({ resourceType: 'FUNCTION', resourceId: [py, custom], tagKey: ['team'] }));
    const left = await fc.listTagResources(new FC.ListTagResourcesRequest({ resourceType: 'FUNCTION', resourceId: [py, custom] }));
    assert.deepEqual(left.body.tagResources.map((x) => x.tagKey), ['env', 'env']);
    assert.deepEqual((await fc.getFunction(py, new FC.GetFunctionRequest({}))).body.tags.map((x) => x.key), ['env']);
    await rejects(fc.disableFunctionInvocation(py, new FC.DisableFunctionInvocationRequest({})), 501, 'NotImplemented');
  });

  await t.test('UpdateFunction, GetFunctionCode, DeleteFunction', async () => {
    const up = await fc.updateFunction(py, new FC.UpdateFunctionRequest({ body: new FC.UpdateFunctionInput({ memorySize: 1024, description: 'changed' }) }));
    assert.equal(up.body.memorySize, 1024);
    assert.equal(up.body.cpu, 0.25, 'a new memory size without cpu takes its default cpu');
    const code = await fc.getFunctionCode(py, new FC.GetFunctionCodeRequest({}));
    // A link presigned by the caller's key: a plain GET downloads the package (a zip).
    assert.match(code.body.url, new RegExp(`/nimbus/v1/functions/${py}/code\\?.*X-Amz-Signature=`));
    const zipped = await fetch(code.body.url);
    assert.equal(zipped.status, 200);
    assert.equal(Buffer.from(await zipped.arrayBuffer()).subarray(0, 2).toString(), 'PK');
    assert.equal((await fetch(code.body.url.split('?')[0])).status, 403, 'the link without its signature');
    for (const name of [py, custom]) {
      const d = await fc.deleteFunction(name);
      assert.equal(d.statusCode, 204);
    }
    await rejects(fc.deleteFunction(py), 404, 'FunctionNotFound');
  });
});
