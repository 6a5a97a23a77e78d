package rabbitmq

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestOrderingKey(t *testing.T) {
	d := &amqp.Delivery{RoutingKey: "rk", Headers: amqp.Table{
		"tenant": "a", "bytes": []byte("b"), "n": int32(7), "void": nil, "empty": "",
	}}
	tests := []struct {
		orderBy     string
		d           *amqp.Delivery
		key         string
		ordered     bool
		wantLaneKey string
	}{
		{"", d, "", false, ""},
		{"none", d, "", false, ""},
		{"queue", d, "q", true, "=q"},
		{"routingKey", d, "rk", true, "=rk"},
		{"routingKey", &amqp.Delivery{}, "", true, "="},
		{"header:tenant", d, "a", true, "=a"},
		{"header:bytes", d, "b", true, "=b"},
		{"header:n", d, "7", true, "=7"},
		{"header:empty", d, "", true, "="},
		{"header:void", d, "", false, ""},
		{"header:missing", d, "", false, ""},
		{"header:Tenant", d, "", false, ""}, // header names are case-sensitive
		{"header:tenant", &amqp.Delivery{}, "", false, ""},
	}
	for _, tt := range tests {
		o, err := parseOrderBy(tt.orderBy)
		if err != nil {
			t.Fatalf("parseOrderBy(%q): %v", tt.orderBy, err)
		}
		key, ordered := o.key("q", tt.d)
		if key != tt.key || ordered != tt.ordered {
			t.Errorf("orderBy %q: key = %q, %v; want %q, %v", tt.orderBy, key, ordered, tt.key, tt.ordered)
		}
		if got := laneKey(key, ordered); got != tt.wantLaneKey {
			t.Errorf("orderBy %q: lane key = %q, want %q", tt.orderBy, got, tt.wantLaneKey)
		}
	}
}

func TestMessageKey(t *testing.T) {
	src := source(t, "amqp://h/", "q")
	src.order = ordering{by: OrderRoutingKey}
	d := &amqp.Delivery{RoutingKey: "orders.eu", DeliveryTag: 3}
	key, _ := src.order.key("q", d)
	m := src.message("c1", key, d, time.Now())
	if m.Key != "orders.eu" || m.Subject != "orders.eu" || m.ID != "c1-3" {
		t.Errorf("message = %+v, want key and subject orders.eu, id c1-3", m)
	}
}

// fakeChannel plays a channel's unacknowledged deliveries as RabbitMQ
// keeps them: basic.ack of a tag that is not unacknowledged is an error.
type fakeChannel struct {
	t       *testing.T
	unacked map[uint64]bool
	batch   map[uint64]bool // the batch being acknowledged
	sends   int
}

func (f *fakeChannel) ack(tag uint64, multiple bool) error {
	f.sends++
	if !f.unacked[tag] {
		f.t.Fatalf("ack(%d, %v): unknown delivery tag", tag, multiple)
	}
	for t := range f.unacked {
		if t == tag || (multiple && t < tag) {
			if !f.batch[t] {
				f.t.Fatalf("ack(%d, %v) acknowledges %d of another batch", tag, multiple, t)
			}
			delete(f.unacked, t)
		}
	}
	return nil
}

func TestAckerAcknowledgesOnlyTheBatch(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 1))
		const n = 60
		f := &fakeChannel{t: t, unacked: map[uint64]bool{}}
		for tag := uint64(1); tag <= n; tag++ {
			f.unacked[tag] = true
		}
		// Deal the tags to random lanes in order, cut them into batches,
		// and finish the batches in random order; some are never
		// acknowledged (their Deliver failed).
		lanes := make([][]uint64, 1+rng.IntN(4))
		for tag := uint64(1); tag <= n; tag++ {
			i := rng.IntN(len(lanes))
			lanes[i] = append(lanes[i], tag)
		}
		var batches [][]uint64
		for _, l := range lanes {
			for len(l) > 0 {
				k := min(len(l), 1+rng.IntN(8))
				batches = append(batches, l[:k])
				l = l[k:]
			}
		}
		rng.Shuffle(len(batches), func(i, j int) { batches[i], batches[j] = batches[j], batches[i] })
		a := newAcker(f.ack)
		failed := map[uint64]bool{}
		for _, b := range batches {
			if rng.IntN(10) == 0 {
				for _, tag := range b {
					failed[tag] = true
				}
				continue
			}
			f.batch = map[uint64]bool{}
			for _, tag := range b {
				f.batch[tag] = true
			}
			if err := a.ack(b); err != nil {
				t.Fatal(err)
			}
		}
		var left []uint64
		for tag := range f.unacked {
			left = append(left, tag)
		}
		slices.Sort(left)
		var want []uint64
		for tag := range failed {
			want = append(want, tag)
		}
		slices.Sort(want)
		if !slices.Equal(left, want) {
			t.Fatalf("seed %d: unacknowledged %v, want the failed %v", seed, left, want)
		}
	}
}

func TestAckerUsesMultipleWhenSafe(t *testing.T) {
	f := &fakeChannel{t: t, unacked: map[uint64]bool{}}
	for tag := uint64(1); tag <= 30; tag++ {
		f.unacked[tag] = true
	}
	a := newAcker(f.ack)
	for _, b := range [][]uint64{{1, 2, 3, 4, 5}, {11, 12, 13, 14, 15}, {6, 7, 8, 9, 10}, {16, 17, 18, 19, 20}} {
		f.batch = map[uint64]bool{}
		for _, tag := range b {
			f.batch[tag] = true
		}
		if err := a.ack(b); err != nil {
			t.Fatal(err)
		}
	}
	// 1-5 and 6-10 and 16-20 follow the floor: one ack each; 11-15 came
	// early: five.
	if f.sends != 8 {
		t.Errorf("sent %d acks, want 8", f.sends)
	}
	if a.floor != 20 || len(a.above) != 0 {
		t.Errorf("floor = %d with %d above, want 20 and none", a.floor, len(a.above))
	}
}
