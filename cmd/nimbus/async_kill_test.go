package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestAsyncSurvivesSIGKILL kills Nimbus with SIGKILL while thousands of
// asynchronous events are being submitted and run, restarts it on the same
// data directory, and checks that every event acknowledged with a 202
// completes.
func TestAsyncSurvivesSIGKILL(t *testing.T) {
	dir := dataDir(t)
	flags := []string{"--async-ack-wait", "2s", "--async-concurrency", "8"}
	s := startServer(t, dir, flags...)
	create(t, s.client(), "work", "import time\ndef handler(e, c):\n    time.sleep(0.002)\n    return e\n")

	const total = 3000
	var (
		mu    sync.Mutex
		acked = map[string]bool{}
		next  atomic.Int64
		wg    sync.WaitGroup
	)
	killAt := int64(total / 2)
	killed := make(chan struct{})
	var once sync.Once
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= total {
					return
				}
				id := fmt.Sprintf("ev-%d", i)
				if submitAsync(s.addr, "work", id) {
					mu.Lock()
					acked[id] = true
					mu.Unlock()
				}
				if i == killAt {
					once.Do(func() {
						_ = s.cmd.Process.Signal(syscall.SIGKILL)
						close(killed)
					})
				}
				select {
				case <-killed:
					return
				default:
				}
			}
		}()
	}
	wg.Wait()
	<-s.done
	s.done <- nil
	if len(acked) < 1000 {
		t.Fatalf("only %d events acknowledged before the kill; the test needs a backlog", len(acked))
	}

	s2 := startServer(t, dir, flags...)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		done := succeeded(t, s2.addr, "work")
		missing := 0
		for id := range acked {
			if !done[id] {
				missing++
			}
		}
		if missing == 0 {
			t.Logf("all %d acknowledged events succeeded after SIGKILL and restart", len(acked))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged events never succeeded", missing, len(acked))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// submitAsync submits one event with a task id; true when it got a 202.
func submitAsync(addr, fn, id string) bool {
	req, _ := http.NewRequest("POST", "http://"+addr+"/2015-03-31/functions/"+fn+"/invocations",
		strings.NewReader(`{"id":"`+id+`"}`))
	req.Header.Set("X-Amz-Invocation-Type", "Event")
	req.Header.Set("X-Nimbus-Task-Id", id)
	resp, err := do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusAccepted
}

// succeeded lists the function's succeeded task ids.
func succeeded(t *testing.T, addr, fn string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	marker := ""
	for {
		u := "http://" + addr + "/nimbus/v1/functions/" + fn + "/tasks?status=Succeeded&limit=1000&marker=" + url.QueryEscape(marker)
		resp, err := get(u)
		if err != nil {
			t.Fatal(err)
		}
		var page struct {
			Tasks []struct {
				ID string `json:"id"`
			} `json:"tasks"`
			NextMarker string `json:"nextMarker"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range page.Tasks {
			out[task.ID] = true
		}
		if page.NextMarker == "" {
			return out
		}
		marker = page.NextMarker
	}
}
