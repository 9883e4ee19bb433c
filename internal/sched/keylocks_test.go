package sched

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestKeyLocks(t *testing.T) {
	var k KeyLocks
	var inA atomic.Int32
	var maxA atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer k.Lock("a")()
			n := inA.Add(1)
			if n > maxA.Load() {
				maxA.Store(n)
			}
			time.Sleep(2 * time.Millisecond)
			inA.Add(-1)
		}()
	}
	// Another key is not held up by "a".
	unlockB := k.Lock("b")
	unlockB()
	wg.Wait()
	if maxA.Load() != 1 {
		t.Fatalf("%d holders of one key at once", maxA.Load())
	}
	if len(k.m) != 0 {
		t.Fatalf("%d keys left after every unlock", len(k.m))
	}
}
