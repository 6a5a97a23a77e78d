"""Nimbus's Python runtime: the AWS Lambda Runtime API loop for python3.x.

Started as `python3.x -u bootstrap.py` with the standard Lambda environment
(AWS_LAMBDA_RUNTIME_API, _HANDLER, LAMBDA_TASK_ROOT, ...). Standard library
only; Python 3.8 or later. Started with _NIMBUS_ZYGOTE=1 instead, it is a
zygote: imported ahead of demand, it waits for its instance's environment and
output on stdin (become_instance) before it loads the handler.

Cold starts pay for every import made here, so the runtime imports only what
it needs before the user's module: the C _socket module (not socket, which
pulls in enum and selectors) under a small HTTP/1.1 client of its own (not
http.client, which pulls in email, ssl and urllib), and json. traceback is
imported on the first error, and decimal only ever comes from the user's code.
logging is configured the way Lambda's runtime does it (a handler on the root
logger writing Lambda's records) when the user's code first imports it, not
imported up front. `python3 -X importtime bootstrap.py` shows what a change
costs.

Logs follow Lambda's Python runtime: print() output is written as it is;
logging records are one line each (the line ends of a multi-line message
become carriage returns, as Lambda keeps such a record in one event), in
Lambda's text format "[LEVEL]\ttimestamp\trequestId\tmessage" or, with
AWS_LAMBDA_LOG_FORMAT=JSON, as Lambda's JSON objects. AWS_LAMBDA_LOG_LEVEL
sets the root logger's level; in the JSON format it also filters the rest of
the output written through sys.stdout and sys.stderr the way Lambda's platform
does: a line that is a JSON object with a "level" has that level, any other
line is INFO.
"""

import _socket
import json
import os
import sys
import time

API_PREFIX = "/2018-06-01/runtime"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
THIS_FILE = os.path.abspath(__file__)

LOG_JSON = False  # AWS_LAMBDA_LOG_FORMAT is JSON (set by main)
LOG_LEVEL = ""  # AWS_LAMBDA_LOG_LEVEL, "" when unset (set by main)
ZYGOTE_ENV = "_NIMBUS_ZYGOTE"  # set (to 1) when started as a zygote: see become_instance
LOG_DATE = "%Y-%m-%dT%H:%M:%S"
# Lambda's application log levels, in order, with the logging module's names.
LEVEL_RANK = {"TRACE": 0, "DEBUG": 1, "INFO": 2, "WARN": 3, "WARNING": 3, "ERROR": 4, "FATAL": 5, "CRITICAL": 5}
ERROR_LINE_END = "\r"  # joins the lines of an error record
ERROR_INDENT = "\u00a0"  # no-break space: indents of stack lines in an error record

MAX_HEAD = 1 << 20  # bound on a response's status line and headers
RECV_SIZE = 1 << 16
SMALL_BODY = 1 << 16  # bodies up to this size go out in one send with the head
URL_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")


class Fault(Exception):
    """An error the runtime reports with a Lambda error type of its own."""

    def __init__(self, error_type, message, stack=None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.stack = stack or []


class ProtocolError(Exception):
    """The Runtime API answered with something that is not HTTP/1.x."""


class Disconnected(ConnectionError):
    """The Runtime API closed the connection before its answer was complete."""


class RuntimeClient:
    """A minimal HTTP/1.1 client of the Runtime API over one kept-alive TCP
    connection: requests with Content-Length bodies; responses with bodies by
    Content-Length, chunked transfer encoding or up to the end of the
    connection; header names compared in lower case."""

    def __init__(self, addr):
        self.addr = addr
        host, _, port = addr.rpartition(":")
        if host.startswith("[") and host.endswith("]"):  # [::1]:9001
            host = host[1:-1]
        self.host = host or "127.0.0.1"
        self.port = int(port)
        self.sock = None
        self.buf = bytearray()  # received and not yet parsed
        self.ever_connected = False

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
        self.buf = bytearray()

    def addresses(self):
        """(family, sockaddr) to try, without a resolver for IP literals."""
        for family in (_socket.AF_INET, _socket.AF_INET6):
            try:
                _socket.inet_pton(family, self.host)
            except (OSError, ValueError):
                continue
            return [(family, (self.host, self.port))]
        infos = _socket.getaddrinfo(self.host, self.port, 0, _socket.SOCK_STREAM)
        return [(info[0], info[4]) for info in infos]

    def connect(self):
        err = None
        for family, sockaddr in self.addresses():
            sock = _socket.socket(family, _socket.SOCK_STREAM)
            try:
                # Blocking, whatever socket.setdefaulttimeout the user's code
                # set: /invocation/next is a long poll.
                sock.settimeout(None)
                sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
                sock.connect(sockaddr)
            except OSError as e:
                sock.close()
                err = e
                continue
            self.sock = sock
            self.ever_connected = True
            return
        raise err or OSError("no address for %s" % self.addr)

    def request(self, method, path, body=None, headers=()):
        """Sends a request and returns (status, headers, body) of its
        response, headers keyed by lower-case name. A failure on a connection
        that served earlier requests (the server may have closed it while it
        was idle) is retried once on a new connection.

        Raises OSError (ConnectionError when the server dropped the
        connection) or ProtocolError."""
        lines = ["%s %s%s HTTP/1.1\r\nHost: %s\r\n" % (method, API_PREFIX, path, self.addr)]
        if body is not None:
            lines.append("Content-Length: %d\r\n" % len(body))
        for name, value in headers:
            lines.append("%s: %s\r\n" % (name, value))
        lines.append("\r\n")
        head = "".join(lines).encode("utf-8")
        for attempt in (0, 1):
            fresh = self.sock is None
            if fresh:
                self.connect()
            try:
                if body is None:
                    self.sock.sendall(head)
                elif len(body) <= SMALL_BODY:
                    self.sock.sendall(head + body)
                else:
                    self.sock.sendall(head)
                    self.sock.sendall(body)
                return self.read_response()
            except (OSError, ProtocolError):
                self.close()
                if fresh or attempt:
                    raise
        raise AssertionError("unreachable")

    def fill(self):
        """Reads more of the response into the buffer."""
        data = self.sock.recv(RECV_SIZE)
        if not data:
            raise Disconnected("Runtime API closed the connection")
        self.buf += data

    def read_line(self):
        """The next line, without its line ending."""
        start = 0
        while True:
            i = self.buf.find(b"\n", start)
            if i >= 0:
                break
            if len(self.buf) > MAX_HEAD:
                raise ProtocolError("line too long")
            start = len(self.buf)
            self.fill()
        line = bytes(self.buf[:i])
        del self.buf[: i + 1]
        return line[:-1] if line.endswith(b"\r") else line

    def read_head(self):
        """The next response's status and headers, and whether the connection
        must close after it."""
        buf = self.buf
        start = 0
        while True:
            # Tolerate stray line ends between responses and bare LF line ends.
            if buf[:1] in (b"\r", b"\n"):
                while buf[:1] in (b"\r", b"\n"):
                    del buf[:1]
                start = 0
            i = buf.find(b"\n\r\n", start)
            j = buf.find(b"\n\n", start)
            if i >= 0 and (j < 0 or i < j):
                end, skip = i, 3
                break
            if j >= 0:
                end, skip = j, 2
                break
            if len(buf) > MAX_HEAD:
                raise ProtocolError("response head over %d bytes" % MAX_HEAD)
            start = max(len(buf) - 2, 0)
            self.fill()
        # Header values are UTF-8 (request ids, client context JSON); bytes
        # that are not survive as surrogate escapes.
        lines = bytes(buf[:end]).decode("utf-8", "surrogateescape").split("\n")
        del buf[: end + skip]
        status_line = lines[0].rstrip("\r")
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or len(parts[1]) != 3 or not parts[1].isdigit():
            raise ProtocolError("bad status line %r" % status_line[:200])
        status = int(parts[1])
        headers = {}
        last = None
        for line in lines[1:]:
            line = line.rstrip("\r")
            if line[:1] in (" ", "\t") and last is not None:  # obsolete line folding
                headers[last] = (headers[last] + " " + line.strip()).strip()
                continue
            name, sep, value = line.partition(":")
            name = name.strip().lower()
            if not sep or not name:
                raise ProtocolError("bad header line %r" % line[:200])
            value = value.strip()
            if name not in headers:
                headers[name] = value
            elif name in ("content-length", "transfer-encoding", "connection"):
                headers[name] += ", " + value
            last = name
        tokens = [t.strip().lower() for t in headers.get("connection", "").split(",")]
        close = "close" in tokens or (parts[0] == "HTTP/1.0" and "keep-alive" not in tokens)
        return status, headers, close

    def read_response(self):
        while True:
            status, headers, close = self.read_head()
            if not 100 <= status < 200 or status == 101:
                break  # an interim 1xx answer precedes the real one
        if status in (204, 304) or 100 <= status < 200:
            body = b""
        else:
            te = headers.get("transfer-encoding")
            cl = headers.get("content-length")
            if te is not None:
                codings = [t.strip().lower() for t in te.split(",") if t.strip()]
                if codings == ["chunked"]:
                    body = self.read_chunked()
                elif codings and codings[-1] == "chunked":
                    raise ProtocolError("unsupported transfer encoding %r" % te)
                else:
                    body, close = self.read_to_end(), True
            elif cl is not None:
                values = set(v.strip() for v in cl.split(","))
                value = values.pop()
                if values or not value.isdigit() or not value.isascii():
                    raise ProtocolError("bad Content-Length %r" % cl)
                body = self.read_exact(int(value))
            else:
                body, close = self.read_to_end(), True
        if close:
            self.close()
        return status, headers, body

    def read_exact(self, n):
        buf = self.buf
        if len(buf) >= n:
            body = bytes(buf[:n])
            del buf[:n]
            return body
        body = bytearray(n)
        have = len(buf)
        body[:have] = buf
        del buf[:]
        with memoryview(body) as view:
            while have < n:
                got = self.sock.recv_into(view[have:])
                if not got:
                    raise Disconnected("Runtime API closed the connection in a body")
                have += got
        return body

    def read_chunked(self):
        chunks = []
        while True:
            size = self.read_line().split(b";", 1)[0].strip()
            if not size or not HEX_DIGITS.issuperset(size):
                raise ProtocolError("bad chunk size %r" % size[:40])
            n = int(size, 16)
            if n == 0:
                break
            chunks.append(self.read_exact(n))
            if self.read_line():
                raise ProtocolError("chunk not followed by a line end")
        while self.read_line():  # trailers
            pass
        return b"".join(chunks)

    def read_to_end(self):
        chunks = [bytes(self.buf)]
        del self.buf[:]
        while True:
            data = self.sock.recv(RECV_SIZE)
            if not data:
                return b"".join(chunks)
            chunks.append(data)

    def next(self):
        """Waits for the next invocation: returns (headers, body).

        Raises OSError (ConnectionError when the server dropped the
        connection, as it does when it closes), ProtocolError or, on a
        status other than 200, RuntimeError."""
        status, headers, body = self.request("GET", "/invocation/next")
        if status != 200:
            raise RuntimeError("GET /invocation/next: status %d: %r" % (status, bytes(body[:200])))
        return headers, body

    def post(self, path, body, headers):
        """Posts body, logging rather than raising when it fails: the next
        /invocation/next tells whether the server is still there."""
        try:
            status, _, resp = self.request("POST", path, body, headers)
        except (OSError, ProtocolError) as e:
            log("[WARN] POST %s: %s" % (path, e))
            return None
        if status != 202:
            log("[WARN] POST %s: status %d: %s" % (path, status, bytes(resp).decode("utf-8", "replace")))
        return status

    def response(self, request_id, payload):
        return self.post("/invocation/%s/response" % quote(request_id), payload, JSON_HEADERS)

    def error(self, request_id, doc):
        return self.post("/invocation/%s/error" % quote(request_id), *error_request(doc))

    def init_error(self, doc):
        return self.post("/init/error", *error_request(doc))


JSON_HEADERS = (("Content-Type", "application/json"),)


def quote(s):
    """s percent-encoded for a URL path segment."""
    if URL_SAFE.issuperset(s):
        return s
    return "".join(c if c in URL_SAFE else "".join("%%%02X" % b for b in c.encode("utf-8", "surrogateescape")) for c in s)


def header_value(s):
    """s as a header value: printable ASCII, anything else replaced."""
    if s.isascii() and s.isprintable():
        return s
    return "".join(c if " " <= c <= "~" else "?" for c in s)


def error_request(doc):
    body = json.dumps(doc).encode("utf-8")
    return body, JSON_HEADERS + ((ERROR_TYPE_HEADER, header_value(doc["errorType"])),)


def log(msg):
    """Writes one of the runtime's own warnings."""
    STDERR.write(msg + "\n")
    STDERR.flush()


# The streams the runtime's own records go to (sys.stdout and sys.stderr may
# be filtered, see filter_output, or replaced by the user's code).
STDOUT = sys.stdout
STDERR = sys.stderr

# The request id logging records carry: the last invocation's.
log_request_id = None


def write_record(text):
    """Writes a log record as one line."""
    if text.endswith("\n"):
        text = text[:-1]
    STDOUT.write(text.replace("\n", "\r") + "\n")
    STDOUT.flush()


def log_error(doc):
    """Logs an error document as Lambda's runtime does."""
    if LOG_JSON:
        record = {"timestamp": time.strftime(LOG_DATE, time.gmtime()), "level": "ERROR"}
        record.update(doc)
        STDOUT.write(json.dumps(record) + "\n")
        STDOUT.flush()
        return
    desc = "[ERROR]"
    if doc.get("errorType"):
        desc += " " + doc["errorType"]
    if doc.get("errorMessage"):
        desc += (":" if doc.get("errorType") else "") + " " + doc["errorMessage"]
    lines = [desc, "Traceback (most recent call last):"]
    for element in doc.get("stackTrace") or []:
        if element == "":
            lines.append("")
        for line in element.splitlines():
            stripped = line.lstrip(" ")
            lines.append(ERROR_INDENT * (len(line) - len(stripped)) + stripped)
    STDOUT.write(ERROR_LINE_END.join(lines) + "\n")
    STDOUT.flush()


def line_rank(line):
    """The level rank Lambda's platform gives a line of output."""
    if line.lstrip().startswith("{"):
        try:
            doc = json.loads(line)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            return LEVEL_RANK.get(str(doc.get("level", "")).upper(), LEVEL_RANK["INFO"])
    return LEVEL_RANK["INFO"]


class LevelFilter:
    """A text stream passing on only the lines ranked at least least, as
    Lambda filters a function's output in the JSON log format. A partial line
    waits for its end."""

    def __init__(self, stream, least):
        self.stream = stream
        self.least = least
        self.pending = ""

    def write(self, s):
        lines = (self.pending + s).split("\n")
        self.pending = lines.pop()
        kept = [line + "\n" for line in lines if line_rank(line) >= self.least]
        if kept:
            self.stream.write("".join(kept))
        return len(s)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def __getattr__(self, name):
        return getattr(self.stream, name)


def filter_output():
    """In the JSON log format with a level, filters what the function writes
    through sys.stdout and sys.stderr by that level."""
    if LOG_JSON and LOG_LEVEL in LEVEL_RANK:
        least = LEVEL_RANK[LOG_LEVEL]
        sys.stdout = LevelFilter(sys.stdout, least)
        sys.stderr = LevelFilter(sys.stderr, least)


# Fields of a logging record that are not the user's extras (see
# json_formatter).
RECORD_FIELDS = frozenset((
    "name", "msg", "args", "levelname", "levelno", "pathname", "filename", "module", "exc_info", "exc_text",
    "stack_info", "lineno", "funcName", "created", "msecs", "relativeCreated", "thread", "threadName",
    "processName", "process", "aws_request_id", "tenant_id", "_frame_type",
))


def json_formatter(logging):
    """Lambda's JSON formatter of logging records."""

    class JsonFormatter(logging.Formatter):
        def format(self, record):
            record.levelno = min(50, max(0, record.levelno)) // 10 * 10
            record.levelname = logging.getLevelName(record.levelno)
            exc = record.exc_info
            if exc:
                import traceback
            doc = {
                "timestamp": time.strftime(LOG_DATE, time.gmtime(record.created)) + ".%03dZ" % int(record.msecs),
                "level": record.levelname,
                "message": record.getMessage(),
                "logger": record.name,
                "stackTrace": traceback.format_tb(exc[2]) if exc else None,
                "errorType": exc[0].__name__ if exc else None,
                "errorMessage": str(exc[1]) if exc else None,
                "requestId": getattr(record, "aws_request_id", None),
                "location": "%s:%s:%s" % (record.pathname, record.funcName, record.lineno) if exc else None,
            }
            for key, value in record.__dict__.items():
                if key not in RECORD_FIELDS and key not in doc:
                    doc[key] = value
            doc = {k: v for k, v in doc.items() if v is not None}
            return json.JSONEncoder(ensure_ascii=False).encode(doc)

    return JsonFormatter()


def setup_logging(logging):
    """Gives the root logger Lambda's handler, format and level."""
    logging.Formatter.converter = time.gmtime

    class LambdaLoggerHandler(logging.Handler):
        def emit(self, record):
            try:
                text = self.format(record)
            except Exception:
                self.handleError(record)
                return
            write_record(text)

    class LambdaLoggerFilter(logging.Filter):
        def filter(self, record):
            record.aws_request_id = log_request_id or ""
            return True

    handler = LambdaLoggerHandler()
    if LOG_JSON:
        handler.setFormatter(json_formatter(logging))
    else:
        handler.setFormatter(
            logging.Formatter("[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s", LOG_DATE)
        )
    handler.addFilter(LambdaLoggerFilter())
    root = logging.getLogger()
    level = "DEBUG" if LOG_LEVEL == "TRACE" else LOG_LEVEL  # logging has no TRACE
    if level in logging._nameToLevel:
        root.setLevel(level)
    root.addHandler(handler)


class LoggingHook:
    """A meta path finder that sets logging up (setup_logging) as the
    function first imports it."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "logging":
            return None
        sys.meta_path.remove(cls)
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find else None
            if spec is not None:
                break
        else:
            return None
        if isinstance(spec.loader, type):  # a loader shared by other modules
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_setup(module):
            exec_module(module)
            setup_logging(module)

        spec.loader.exec_module = exec_and_setup
        return spec


def hook_logging():
    """Sets logging up now if it is imported, else when it is."""
    if "logging" in sys.modules:
        setup_logging(sys.modules["logging"])
    else:
        sys.meta_path.insert(0, LoggingHook)


def user_frames(tb):
    """The traceback's frames without the runtime's own."""
    import traceback

    frames = traceback.extract_tb(tb)
    for i, frame in enumerate(frames):
        if os.path.abspath(frame.filename) != THIS_FILE:
            return frames[i:]
    return []


def error_doc(exc):
    """Lambda's error document for an exception."""
    if isinstance(exc, Fault):
        return {"errorMessage": exc.message, "errorType": exc.error_type, "requestId": "", "stackTrace": exc.stack}
    import traceback

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
        __import__(modpath)  # importlib.import_module without importing importlib
        module = sys.modules[modpath]
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
    # A Decimal can only come from a user's code that imported decimal.
    decimal = sys.modules.get("decimal")
    if decimal is not None and isinstance(obj, decimal.Decimal):
        return int(obj) if obj == obj.to_integral_value() else float(obj)
    raise TypeError("Object of type %s is not JSON serializable" % type(obj).__name__)


def handle(client, func, headers, body):
    """Runs one invocation and posts its answer."""
    global log_request_id
    if os.environ.get(FC_ENV):
        return fc_handle(client, func, headers, body)
    request_id = headers.get("lambda-runtime-aws-request-id", "")
    log_request_id = request_id
    trace_id = headers.get("lambda-runtime-trace-id")
    if trace_id:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)
    try:
        context = LambdaContext(
            request_id,
            headers.get("lambda-runtime-invoked-function-arn"),
            int(headers.get("lambda-runtime-deadline-ms") or 0),
            parse_client_context(headers.get("lambda-runtime-client-context")),
            parse_identity(headers.get("lambda-runtime-cognito-identity")),
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
        log_error(doc)
        client.error(request_id, doc)
        return
    client.response(request_id, payload)


# Function Compute's conventions (internal/runtimes' FCEnv, set for functions
# made in the Function Compute dialect): handler(event, context) gets the
# payload as bytes and Function Compute's context; its answer is returned as
# it is (str as UTF-8, bytes), anything else as JSON; the initializer
# (FC_INITIALIZER_HANDLER) runs with its own context and timeout when the
# instance starts, before its first invocation (fc_initialize).
FC_ENV = "_NIMBUS_FC"


class FCCredentials:
    def __init__(self, env):
        self.access_key_id = env.get("ALIBABA_CLOUD_ACCESS_KEY_ID", "")
        self.access_key_secret = env.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "")
        self.security_token = env.get("ALIBABA_CLOUD_SECURITY_TOKEN", "")


class FCFunctionMeta:
    def __init__(self, env):
        self.name = env.get("FC_FUNCTION_NAME", "")
        self.handler = env.get("FC_FUNCTION_HANDLER", "")
        self.memory = int(env.get("FC_FUNCTION_MEMORY_SIZE") or 0)
        self.timeout = int(env.get("_NIMBUS_FC_TIMEOUT") or 0)
        self.initializer = env.get("FC_INITIALIZER_HANDLER", "")
        self.initialization_timeout = int(env.get("FC_INITIALIZATION_TIMEOUT") or 0)


class FCService:
    def __init__(self, version):
        self.name, self.log_project, self.log_store = "", "", ""
        self.qualifier = "LATEST" if version in ("", "$LATEST") else version
        self.version_id = self.qualifier


class FCContext:
    """The context object of Function Compute's Python runtime."""

    def __init__(self, request_id, function_arn, deadline_ms):
        env = os.environ
        self.request_id = request_id
        self.credentials = FCCredentials(env)
        self.function = FCFunctionMeta(env)
        self.service = FCService(env.get("AWS_LAMBDA_FUNCTION_VERSION", ""))
        self.region = env.get("FC_REGION", "")
        parts = (function_arn or "").split(":")
        self.account_id = parts[4] if len(parts) > 4 else ""
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        return max(self._deadline_ms - int(time.time() * 1000), 0)


class FCInitTimeout(BaseException):
    """Raised in the initializer when its time is up: a BaseException, so
    that the user's `except Exception` does not swallow it."""


def fc_initialize():
    """Runs Function Compute's initializer (FC_INITIALIZER_HANDLER) with its
    context as the instance starts, within its own timeout
    (FC_INITIALIZATION_TIMEOUT, 3 s when unset); raises Fault when it fails
    or runs out of time, which fails the instance's start (/init/error), so
    that the next invocation starts an instance that runs it again. The
    engine bounds the start by the same timeout, should the handler hold
    the interpreter in C code past the signal."""
    name = os.environ.get("FC_INITIALIZER_HANDLER")
    if not os.environ.get(FC_ENV) or not name:
        return
    import signal

    timeout = int(os.environ.get("FC_INITIALIZATION_TIMEOUT") or 0) or 3
    init = load_handler(name)
    h = os.urandom(16).hex()
    request_id = "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])
    context = FCContext(request_id, "", int(time.time() * 1000) + 1000 * timeout)

    def expired(signum, frame):
        raise FCInitTimeout()

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        init(context)
    except FCInitTimeout:
        raise Fault("InitializationError", "Initializer timed out after %d seconds" % timeout)
    except Exception as exc:
        doc = error_doc(exc)
        raise Fault("InitializationError", "Initializer failed: %s: %s" % (doc["errorType"], doc["errorMessage"]),
                    doc["stackTrace"])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def fc_on_stop():
    """Runs Function Compute's preStop handler (FC_PRESTOP_HANDLER) with the
    context when the platform stops the instance (SIGTERM), then exits."""
    name = os.environ.get("FC_PRESTOP_HANDLER")
    if not os.environ.get(FC_ENV) or not name:
        return
    import signal

    def on_term(signum, frame):
        try:
            deadline = int(time.time() * 1000) + 1000 * int(os.environ.get("FC_PRESTOP_TIMEOUT") or 3)
            load_handler(name)(FCContext("", "", deadline))
        except Exception as exc:
            log_error(error_doc(exc))
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)


def fc_payload(result):
    """A Function Compute handler's answer as bytes."""
    if result is None:
        return b""
    if isinstance(result, bytes):
        return result
    if isinstance(result, str):
        return result.encode("utf-8")
    try:
        return json.dumps(result, default=json_default).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise Fault("Runtime.MarshalError", "Unable to marshal response: %s" % e)


def fc_handle(client, func, headers, body):
    """Runs one invocation with Function Compute's conventions."""
    global log_request_id
    request_id = headers.get("lambda-runtime-aws-request-id", "")
    log_request_id = request_id
    try:
        context = FCContext(request_id, headers.get("lambda-runtime-invoked-function-arn"),
                            int(headers.get("lambda-runtime-deadline-ms") or 0))
        payload = fc_payload(func(body or b"", context))
    except Exception as exc:  # the user's error: report it and take the next invocation
        doc = error_doc(exc)
        doc["requestId"] = request_id
        log_error(doc)
        client.error(request_id, doc)
        return
    client.response(request_id, payload)


def become_instance():
    """Started as a zygote (internal/sandbox's Zygote: imported and waiting
    before the function is known), takes its instance from the socket on
    stdin: the environment and the working directory (its stdout and
    stderr already lead to the platform, which gives them to the instance)."""
    sock = _socket.socket(fileno=os.dup(0))
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sock.sendall(b"+")
    data = b""
    while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
        chunk = sock.recv(RECV_SIZE)
        if not chunk:
            sys.exit(1)  # the platform went away
        data += chunk
    sock.sendall(b".")
    try:
        cfg = json.loads(data[4:])
        os.environ.clear()
        os.environ.update(kv.split("=", 1) for kv in cfg["env"])
        os.chdir(cfg["dir"])
    except Exception as e:
        sock.sendall(json.dumps({"op": "zygote", "errno": getattr(e, "errno", None) or 0, "msg": str(e)}).encode())
        sys.exit(1)
    time.tzset()
    # The finders cached the code directory while it was empty.
    sys.path_importer_cache.clear()
    sock.close()


def main():
    global LOG_JSON, LOG_LEVEL
    if os.environ.get(ZYGOTE_ENV):
        become_instance()
    LOG_JSON = os.environ.get("AWS_LAMBDA_LOG_FORMAT", "").upper() == "JSON"
    LOG_LEVEL = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "").upper()
    os.environ["LAMBDA_RUNTIME_DIR"] = os.path.dirname(THIS_FILE)
    task_root = os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()
    # sys.path[0] is this script's directory: user modules come from the task root instead.
    sys.path[0] = task_root
    for stream in (sys.stdout, sys.stderr):
        if not getattr(stream, "write_through", True):
            # Started without -u (an image's own entry point, say): each
            # line is written at once, so that it is in its invocation's log.
            stream.reconfigure(line_buffering=True)
    filter_output()
    hook_logging()
    client = RuntimeClient(os.environ["AWS_LAMBDA_RUNTIME_API"])
    try:
        func = load_handler(os.environ.get("_HANDLER", ""))
        fc_initialize()
    except Exception as exc:
        doc = error_doc(exc)
        log_error(doc)
        client.init_error(doc)
        return 1
    fc_on_stop()
    while True:
        try:
            headers, body = client.next()
        except ConnectionError:
            if client.ever_connected:
                return 0  # the server closed: the instance is being stopped
            raise
        handle(client, func, headers, body)


if __name__ == "__main__":
    sys.exit(main())
