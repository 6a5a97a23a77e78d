package nimbus

// Log attribute keys. Every part spells them the same way, so that one query
// finds a function's, a request's or an error's lines across a node's log.
const (
	LogFunction = "function"
	LogInstance = "instance"
	LogRequest  = "request_id"
	LogTask     = "task"
	LogTrigger  = "trigger"
	LogRuntime  = "runtime"
	LogErr      = "err"
	LogErrorID  = "error_id"
)
