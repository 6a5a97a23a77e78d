package node

import (
	"golang.org/x/sys/unix"

	"github.com/nimbus-serverless/nimbus/internal/api"
)

// accountLimits are the node's limits, as GetAccountSettings reports them
// (api.NodeLimits).
type accountLimits struct{ cfg Config }

var _ api.NodeLimits = accountLimits{}

// AccountLimits: the package limits of --max-zipped/--max-unzipped, the
// --max-instances cap on instances, and, with the embedded store, the size
// of the data directory's file system, which is what the store may fill
// (a remote NATS's limit is not known: 0).
func (a accountLimits) AccountLimits() api.AccountLimits {
	out := api.AccountLimits{
		CodeSizeZipped: a.cfg.MaxZipped, CodeSizeUnzipped: a.cfg.MaxUnzipped,
		ConcurrentExecutions: a.cfg.MaxInstances,
	}
	var st unix.Statfs_t
	if a.cfg.NATSURL == "" && unix.Statfs(a.cfg.DataDir, &st) == nil {
		out.TotalCodeSize = int64(st.Blocks) * st.Bsize
	}
	return out
}
