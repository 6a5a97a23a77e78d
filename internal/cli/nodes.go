package cli

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// nodeView is one live node of the cluster, as GET /nimbus/v1/nodes
// answers it.
type nodeView struct {
	ID            string    `json:"Id"`
	Address       string    `json:"Address"`
	Version       string    `json:"Version"`
	Started       time.Time `json:"Started"`
	UptimeSeconds int64     `json:"UptimeSeconds"`
	Instances     int       `json:"Instances"`
	Busy          int       `json:"Busy"`
	Idle          int       `json:"Idle"`
	Load          float64   `json:"Load"`
	WarmVersions  int       `json:"WarmVersions"`
	Heartbeat     time.Time `json:"Heartbeat"`
	Self          bool      `json:"Self,omitempty"`
}

func newNodesCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "nodes",
		Short: "List the live nodes of the cluster (the endpoint's node is marked *)",
		Args:  cobra.NoArgs,
		RunE: g.run(func(cmd *cobra.Command, c *client, _ []string) error {
			resp, err := c.get(cmd.Context(), "/nimbus/v1/nodes", nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var body struct{ Nodes []nodeView }
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				return fmt.Errorf("read nodes: %w", err)
			}
			if body.Nodes == nil {
				body.Nodes = []nodeView{}
			}
			if g.json() {
				return writeJSON(cmd.OutOrStdout(), body.Nodes)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 3, ' ', 0)
			fmt.Fprintln(tw, "ADDRESS\tID\tVERSION\tUPTIME\tINSTANCES\tBUSY\tIDLE\tLOAD")
			for _, n := range body.Nodes {
				addr := n.Address
				if n.Self {
					addr += " *"
				}
				up := (time.Duration(n.UptimeSeconds) * time.Second).String()
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%.2f\n", addr, n.ID, n.Version, up, n.Instances, n.Busy, n.Idle, n.Load)
			}
			return tw.Flush()
		}),
	}
}
