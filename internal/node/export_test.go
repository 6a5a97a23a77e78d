package node

import "time"

// CollectImagesOlderThan runs the node's collection of unused images for
// images at least minAge old (the node's own waits imageMinAge) and
// returns what it removed.
func (n *Node) CollectImagesOlderThan(minAge time.Duration) []string {
	return n.collectImagesOlderThan(minAge)
}
