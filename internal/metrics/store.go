package metrics

import "time"

// storeOps are the operations of StoreWrite; others count as "other".
var storeOps = map[string]bool{"kv_create": true, "kv_update": true, "kv_put": true, "kv_delete": true, "blob_put": true}

// StoreWrite observes a store write's duration (natsstore.Config.ObserveWrite).
func (m *Metrics) StoreWrite(op string, d time.Duration) {
	if !storeOps[op] {
		op = "other"
	}
	m.storeWrite.WithLabelValues(op).Observe(d.Seconds())
}
