package image

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Use marks the image digest ("sha256:<hex>") in use, by an instance that
// runs it, until the returned func is called (once; later calls do
// nothing). Collect never removes an image in use.
func (s *Store) Use(digest string) (release func()) {
	hex := strings.TrimPrefix(digest, "sha256:")
	s.mu.Lock()
	s.inUse[hex]++
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			if s.inUse[hex]--; s.inUse[hex] <= 0 {
				delete(s.inUse, hex)
			}
			s.mu.Unlock()
		})
	}
}

// Collect removes the images (flattened roots) whose digest keep does not
// return true for, that are not in use (Use) nor being ensured, and that
// were neither made nor returned by Ensure within minAge; then the layers
// that no remaining image uses and that are older than minAge. It returns
// what it removed: "image sha256:<hex>" and "layer sha256:<hex>".
//
// An image Ensure returned must be marked in use (or kept) before it is
// older than minAge; so a minAge of 0 is only for a node that runs nothing.
// Removal goes by renaming into tmp/ first, so a crash midway leaves no
// half-removed image or layer that looks whole.
func (s *Store) Collect(keep func(digest string) bool, minAge time.Duration) (removed []string, err error) {
	doomed, removed, err := s.doom(keep, minAge)
	for _, p := range doomed {
		if rerr := removeTree(p); err == nil && rerr != nil {
			err = fmt.Errorf("collect images: %w", rerr)
		}
	}
	for _, r := range removed {
		s.log.Info("image store collected", logDigest, r)
	}
	return removed, err
}

// doom moves what Collect removes into tmp/ and returns those paths.
func (s *Store) doom(keep func(string) bool, minAge time.Duration) (doomed, removed []string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	young := func(p string) bool {
		fi, err := os.Lstat(p)
		return err != nil || now.Sub(fi.ModTime()) < minAge
	}
	move := func(p, what, hex string) error {
		dst := filepath.Join(s.tmpDir(), fmt.Sprintf("collect-%s-%d", hex[:12], now.UnixNano()))
		if err := os.Rename(p, dst); err != nil {
			return fmt.Errorf("collect images: %w", err)
		}
		doomed = append(doomed, dst)
		removed = append(removed, what+" sha256:"+hex)
		return nil
	}
	used := map[string]bool{}
	allLayers := false // an image whose layers are unknown keeps them all
	imgs, err := os.ReadDir(filepath.Join(s.dir, "images"))
	if err != nil {
		return nil, nil, fmt.Errorf("collect images: %w", err)
	}
	for _, e := range imgs {
		hex := e.Name()
		if _, err := hexOf("sha256:" + hex); err != nil {
			continue
		}
		p := s.imageDir(hex)
		if keep("sha256:"+hex) || s.inUse[hex] > 0 || s.busy[hex] > 0 || young(p) {
			var rec record
			b, err := os.ReadFile(filepath.Join(p, "image.json"))
			if err == nil {
				err = json.Unmarshal(b, &rec)
			}
			if err != nil {
				allLayers = true
			}
			for _, l := range rec.Layers {
				used[l] = true
			}
			continue
		}
		if err := move(p, "image", hex); err != nil {
			return doomed, removed, err
		}
	}
	if allLayers {
		return doomed, removed, nil
	}
	layers, err := os.ReadDir(filepath.Join(s.dir, "layers"))
	if err != nil {
		return doomed, removed, fmt.Errorf("collect images: %w", err)
	}
	for _, e := range layers {
		hex := e.Name()
		if _, err := hexOf("sha256:" + hex); err != nil || used[hex] || s.busy[hex] > 0 || young(s.layerDir(hex)) {
			continue
		}
		if err := move(s.layerDir(hex), "layer", hex); err != nil {
			return doomed, removed, err
		}
	}
	return doomed, removed, nil
}
