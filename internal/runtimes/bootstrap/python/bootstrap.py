"""Nimbus's Python runtime: the AWS Lambda Runtime API loop for python3.x.

Started as `python3.x -u bootstrap.py` with the standard Lambda environment
(AWS_LAMBDA_RUNTIME_API, _HANDLER, LAMBDA_TASK_ROOT, ...). Standard library
only; Python 3.8 or later.
"""

import decimal
import http.client
import importlib
import json
import os
import sys
import time
import traceback

API_PREFIX = "/2018-06-01/runtime"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
THIS_FILE = os.path.abspath(__file__)


class Fault(Exception):
    """An error the runtime reports with a Lambda error type of its own."""

    def __init__(self, error_type, message, stack=None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.stack = stack or []


class RuntimeClient:
    """Talks to the Runtime API over one kept connection."""

    def __init__(self, addr):
        host, _, port = addr.rpartition(":")
        self.host = host or "127.0.0.1"
        self.port = int(port)
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        for attempt in (0, 1):
            if self.conn is None:
                # No timeout: /invocation/next is a long poll.
                self.conn = http.client.HTTPConnection(self.host, self.port)
            try:
                self.conn.request(method, API_PREFIX + path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                return resp.status, resp.headers, resp.read()
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise RuntimeError("unreachable")

    def next(self):
        status, headers, body = self.request("GET", "/invocation/next")
        if status != 200:
            raise RuntimeError("GET /invocation/next: status %d: %r" % (status, body[:200]))
        return headers, body

    def post(self, path, body, headers):
        status, _, resp = self.request("POST", path, body=body, headers=headers)
        if status != 202:
            log("[WARN] POST %s: status %d: %s" % (path, status, resp.decode("utf-8", "replace")))
        return status

    def response(self, request_id, payload):
        return self.post("/invocation/%s/response" % request_id, payload, {"Content-Type": "application/json"})

    def error(self, request_id, doc):
        return self.post("/invocation/%s/error" % request_id, *error_request(doc))

    def init_error(self, doc):
        return self.post("/init/error", *error_request(doc))


def error_request(doc):
    body = json.dumps(doc).encode("utf-8")
    return body, {"Content-Type": "application/json", ERROR_TYPE_HEADER: doc["errorType"]}


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def user_frames(tb):
    """The traceback's frames without the runtime's own."""
    frames = traceback.extract_tb(tb)
    for i, frame in enumerate(frames):
        if os.path.abspath(frame.filename) != THIS_FILE:
            return frames[i:]
    return []


def error_doc(exc):
    """Lambda's error document for an exception."""
    if isinstance(exc, Fault):
        return {"errorMessage": exc.message, "errorType": exc.error_type, "requestId": "", "stackTrace": exc.stack}
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "requestId": "",
        "stackTrace": traceback.format_list(user_frames(exc.__traceback__)),
    }


def load_handler(handler):
    """Imports the handler's module and returns its function, or raises Fault."""
    try:
        modname, fname = handler.rsplit(".", 1)
    except ValueError as e:
        raise Fault("Runtime.MalformedHandlerName", "Bad handler '%s': %s" % (handler, e))
    if not modname or not fname:
        raise Fault("Runtime.MalformedHandlerName", "Bad handler '%s': empty module or function name" % handler)
    modpath = modname.replace("/", ".")
    if modpath.split(".")[0] in sys.builtin_module_names:
        raise Fault("Runtime.BuiltInModuleConflict", "Cannot use built-in module %s as a handler module" % modname)
    try:
        module = importlib.import_module(modpath)
    except ImportError as e:
        raise Fault("Runtime.ImportModuleError", "Unable to import module '%s': %s" % (modname, e))
    except SyntaxError as e:
        stack = ['  File "%s" Line %s\n    %s' % (e.filename, e.lineno, (e.text or "").strip())]
        raise Fault("Runtime.UserCodeSyntaxError", "Syntax error in module '%s': %s" % (modname, e), stack)
    func = getattr(module, fname, None)
    if func is None:
        raise Fault("Runtime.HandlerNotFound", "Handler '%s' missing on module '%s'" % (fname, modname))
    if not callable(func):
        raise Fault("Runtime.HandlerNotFound", "Handler '%s' on module '%s' is not callable" % (fname, modname))
    return func


class Obj:
    """A plain object built from a JSON document's fields."""

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def __repr__(self):
        return "%s(%r)" % (type(self).__name__, self.__dict__)


class ClientContext(Obj):
    pass


class Client(Obj):
    pass


class CognitoIdentity(Obj):
    pass


def parse_client_context(raw):
    if not raw:
        return None
    doc = json.loads(raw)
    client = doc.get("client") or doc.get("Client")
    if client is not None:
        client = Client(
            installation_id=client.get("installation_id"),
            app_title=client.get("app_title"),
            app_version_name=client.get("app_version_name"),
            app_version_code=client.get("app_version_code"),
            app_package_name=client.get("app_package_name"),
        )
    return ClientContext(client=client, custom=doc.get("custom"), env=doc.get("env"))


def parse_identity(raw):
    if not raw:
        return None
    doc = json.loads(raw)
    return CognitoIdentity(
        cognito_identity_id=doc.get("cognitoIdentityId"),
        cognito_identity_pool_id=doc.get("cognitoIdentityPoolId"),
    )


class LambdaContext:
    """The context object handlers receive, as Lambda's Python runtime has it."""

    def __init__(self, request_id, function_arn, deadline_ms, client_context, identity):
        env = os.environ
        self.aws_request_id = request_id
        self.invoked_function_arn = function_arn
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.client_context = client_context
        self.identity = identity
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        return max(self._deadline_ms - int(time.time() * 1000), 0)

    def __repr__(self):
        return "LambdaContext(aws_request_id=%r, function_name=%r)" % (self.aws_request_id, self.function_name)


def json_default(obj):
    if isinstance(obj, decimal.Decimal):
        return int(obj) if obj == obj.to_integral_value() else float(obj)
    raise TypeError("Object of type %s is not JSON serializable" % type(obj).__name__)


def handle(client, func, headers, body):
    """Runs one invocation and posts its answer."""
    request_id = headers.get("Lambda-Runtime-Aws-Request-Id", "")
    trace_id = headers.get("Lambda-Runtime-Trace-Id")
    if trace_id:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)
    try:
        context = LambdaContext(
            request_id,
            headers.get("Lambda-Runtime-Invoked-Function-Arn"),
            int(headers.get("Lambda-Runtime-Deadline-Ms") or 0),
            parse_client_context(headers.get("Lambda-Runtime-Client-Context")),
            parse_identity(headers.get("Lambda-Runtime-Cognito-Identity")),
        )
        try:
            event = json.loads(body) if body else {}
        except ValueError as e:
            raise Fault("Runtime.UnmarshalError", "Unable to unmarshal input: %s" % e)
        result = func(event, context)
        try:
            payload = json.dumps(result, default=json_default).encode("utf-8")
        except (TypeError, ValueError) as e:
            raise Fault("Runtime.MarshalError", "Unable to marshal response: %s" % e)
    except Exception as exc:  # the user's error: report it and take the next invocation
        doc = error_doc(exc)
        doc["requestId"] = request_id
        log(("[ERROR] %s: %s\n%s" % (doc["errorType"], doc["errorMessage"], "".join(doc["stackTrace"]))).rstrip())
        client.error(request_id, doc)
        return
    client.response(request_id, payload)


def main():
    os.environ["LAMBDA_RUNTIME_DIR"] = os.path.dirname(THIS_FILE)
    task_root = os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()
    # sys.path[0] is this script's directory: user modules come from the task root instead.
    sys.path[0] = task_root
    client = RuntimeClient(os.environ["AWS_LAMBDA_RUNTIME_API"])
    try:
        func = load_handler(os.environ.get("_HANDLER", ""))
    except Exception as exc:
        doc = error_doc(exc)
        log("[ERROR] %s: %s" % (doc["errorType"], doc["errorMessage"]))
        client.init_error(doc)
        sys.exit(1)
    while True:
        headers, body = client.next()
        handle(client, func, headers, body)


if __name__ == "__main__":
    main()
