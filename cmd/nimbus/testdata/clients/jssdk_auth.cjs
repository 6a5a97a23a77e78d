// Runs the authentication cases with the AWS SDK for JavaScript v3
// (@aws-sdk/client-lambda) against a Nimbus node and prints one JSON object:
// for each case, its HTTP status, Lambda error code and message, or its
// result. The Go test (cmd/nimbus/clients_test.go) judges.
//
// Usage: NODE_PATH=<dir>/node_modules node jssdk_auth.cjs SPEC.json (SPEC as
// for boto3_auth.py).
"use strict";
const fs = require("fs");
const L = require("@aws-sdk/client-lambda");

const spec = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const report = {};

function client(key, extra) {
  const cfg = { endpoint: spec.Endpoint, region: "us-east-1", maxAttempts: 1, ...extra };
  if (key) cfg.credentials = { accessKeyId: key.AccessKeyId, secretAccessKey: key.SecretAccessKey };
  return new L.LambdaClient(cfg);
}

async function kase(name, fn) {
  try {
    report[name] = { Status: 200, Result: await fn() };
  } catch (e) {
    if (e.$metadata && e.$metadata.httpStatusCode) {
      report[name] = { Status: e.$metadata.httpStatusCode, Code: e.name || "", Message: e.message || "" };
    } else {
      report[name] = { Status: -1, Code: e.name || "Error", Message: String(e) };
    }
  }
}

async function main() {
  const admin = client(spec.Admin), inv = client(spec.Invoker), dev = client(spec.Developer);
  const p = spec.Prefix, b = spec.Other;
  const code = fs.readFileSync(spec.Zip);
  const arn = "arn:aws:lambda:us-east-1:000000000000:function:" + p + "one";
  const create = (c, name) => c.send(new L.CreateFunctionCommand({
    FunctionName: name, Runtime: "python3.11", Role: "r", Handler: "app.handler", Code: { ZipFile: code } }));

  await kase("create", async () => (await create(admin, p + "one")).CodeSize);
  await kase("list", async () => (await admin.send(new L.ListFunctionsCommand({ MaxItems: 1 }))).Functions.length);
  await kase("list_marker", async () => {
    const first = await admin.send(new L.ListFunctionsCommand({ MaxItems: 1 }));
    return (await admin.send(new L.ListFunctionsCommand({ MaxItems: 1, Marker: first.NextMarker }))).Functions.length;
  });
  await kase("get_arn", async () =>
    (await admin.send(new L.GetFunctionCommand({ FunctionName: arn, Qualifier: "$LATEST" }))).Configuration.FunctionName);
  const payload = Buffer.from(JSON.stringify({ b: "\u0000\u00ff\u{1F600} bin" }));
  await kase("invoke_binary", async () => {
    const out = await admin.send(new L.InvokeCommand({ FunctionName: arn + ":$LATEST", Payload: payload }));
    return JSON.parse(Buffer.from(out.Payload).toString());
  });

  // No credentials: a signer that signs nothing, as an anonymous caller.
  await kase("anonymous", () => client(null, { credentials: { accessKeyId: "", secretAccessKey: "" },
    signer: { sign: async (req) => req } }).send(new L.ListFunctionsCommand({})));
  await kase("wrong_secret", () => client({ AccessKeyId: spec.Admin.AccessKeyId, SecretAccessKey: "wrong" })
    .send(new L.ListFunctionsCommand({})));
  await kase("unknown_key", () => client({ AccessKeyId: "AKIANOSUCHKEY0000000", SecretAccessKey: "x" })
    .send(new L.ListFunctionsCommand({})));
  await kase("skewed", () => client(spec.Admin, { systemClockOffset: -10 * 60 * 1000 })
    .send(new L.ListFunctionsCommand({})));

  await kase("invoker_invoke", async () =>
    (await inv.send(new L.InvokeCommand({ FunctionName: p + "one", Payload: Buffer.from("{}") }))).StatusCode);
  await kase("invoker_create", () => create(inv, p + "inv"));
  await kase("invoker_update", () => inv.send(new L.UpdateFunctionConfigurationCommand({ FunctionName: p + "one", MemorySize: 256 })));
  await kase("invoker_delete", () => inv.send(new L.DeleteFunctionCommand({ FunctionName: p + "one" })));

  await kase("dev_get_other", () => dev.send(new L.GetFunctionCommand({ FunctionName: b })));
  await kase("dev_invoke_other", () => dev.send(new L.InvokeCommand({ FunctionName: b, Payload: Buffer.from("{}") })));
  await kase("dev_update_other", () => dev.send(new L.UpdateFunctionConfigurationCommand({ FunctionName: b, MemorySize: 256 })));
  await kase("dev_delete_other", () => dev.send(new L.DeleteFunctionCommand({ FunctionName: b })));
  await kase("dev_url_other", () => dev.send(new L.CreateFunctionUrlConfigCommand({ FunctionName: b, AuthType: "NONE" })));
  await kase("dev_invoke_own", async () =>
    (await dev.send(new L.InvokeCommand({ FunctionName: p + "one", Payload: Buffer.from("{}") }))).StatusCode);
  await kase("dev_list", async () =>
    (await dev.send(new L.ListFunctionsCommand({}))).Functions.map((f) => f.FunctionName).sort());
  await kase("delete", async () => (await admin.send(new L.DeleteFunctionCommand({ FunctionName: p + "one" }))).$metadata.httpStatusCode);
  process.stdout.write(JSON.stringify(report, null, 1));
}

main().catch((e) => { console.error(e); process.exit(1); });
