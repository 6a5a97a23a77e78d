package api

import (
	"net/http"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/cluster"
)

// NodeLister is the cluster's membership (cluster.Membership).
type NodeLister interface {
	// Live returns the live nodes, this one included.
	Live() []cluster.Member
}

// NodeInfo is one live node as GET /nimbus/v1/nodes answers it.
type NodeInfo struct {
	ID      string    `json:"Id"`
	Address string    `json:"Address"`
	Version string    `json:"Version"`
	Started time.Time `json:"Started"`
	// UptimeSeconds is the uptime at the node's last heartbeat.
	UptimeSeconds int64   `json:"UptimeSeconds"`
	Instances     int     `json:"Instances"`
	Busy          int     `json:"Busy"`
	Idle          int     `json:"Idle"`
	Load          float64 `json:"Load"`
	// WarmVersions counts the function versions with free warm
	// instances on the node.
	WarmVersions int       `json:"WarmVersions"`
	Heartbeat    time.Time `json:"Heartbeat"`
	Self         bool      `json:"Self,omitempty"`
}

func (s *Server) nodesRoutes() {
	s.handle("GET /nimbus/v1/nodes", s.nodesList)
	if s.cfg.Forwards != nil {
		// Not through handle: a forward is authenticated by the
		// cluster's own signature (cluster.Forwarder.ServeHTTP), not by
		// an access key; it was authorized on the node it arrived at.
		s.mux.Handle("POST "+cluster.ForwardPath, s.cfg.Forwards)
	}
}

func (s *Server) nodesList(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Nodes == nil {
		return newError(http.StatusNotFound, errUnknownOperation, "this node keeps no cluster membership")
	}
	self := s.cfg.SelfID
	nodes := []NodeInfo{}
	for _, m := range s.cfg.Nodes.Live() {
		nodes = append(nodes, NodeInfo{ID: m.ID, Address: m.Address, Version: m.Version, Started: m.Started,
			UptimeSeconds: int64(m.Uptime() / time.Second), Instances: m.Instances, Busy: m.Busy, Idle: m.Idle,
			Load: m.Load, WarmVersions: len(m.Warm), Heartbeat: m.At, Self: m.ID == self})
	}
	return writeJSON(w, http.StatusOK, map[string][]NodeInfo{"Nodes": nodes})
}
