package job

import (
	"errors"
	"testing"
	"time"
)

func TestTerminalStatesNeverChange(t *testing.T) {
	for _, from := range States {
		if !from.Terminal() {
			continue
		}
		for _, to := range States {
			if CanTransition(from, to) {
				t.Errorf("%s → %s allowed; terminal states must never change", from, to)
			}
		}
	}
}

func TestTransitions(t *testing.T) {
	tests := []struct {
		from, to State
		ok       bool
	}{
		{Pending, Queued, true},
		{Pending, Held, true},
		{Held, Pending, true},
		{Held, Running, false},
		{Queued, Running, true},
		{Running, Queued, false},
		{Running, Finishing, true},
		{Finishing, Running, false},
		{Running, Failed, true},
		{Queued, Canceled, true},
		{Running, Running, true},
		{Succeeded, Failed, false},
		{Running, "exploded", false},
	}
	for _, tt := range tests {
		err := Transition(tt.from, tt.to)
		if (err == nil) != tt.ok {
			t.Errorf("Transition(%s, %s) = %v, want ok=%v", tt.from, tt.to, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidTransition) {
			t.Errorf("Transition(%s, %s) error %v does not wrap ErrInvalidTransition", tt.from, tt.to, err)
		}
	}
}

func TestSetStateStampsTimes(t *testing.T) {
	j := &Job{State: Queued}
	t0 := time.Unix(100, 0)
	if err := j.SetState(Running, "agent started", t0); err != nil {
		t.Fatal(err)
	}
	if !j.StartedAt.Equal(t0) || j.Reason != "agent started" {
		t.Fatalf("after running: started %v reason %q", j.StartedAt, j.Reason)
	}
	t1 := time.Unix(200, 0)
	if err := j.SetState(Succeeded, "", t1); err != nil {
		t.Fatal(err)
	}
	if !j.FinishedAt.Equal(t1) || !j.StartedAt.Equal(t0) {
		t.Fatalf("after succeeded: started %v finished %v", j.StartedAt, j.FinishedAt)
	}
	if err := j.SetState(Failed, "late", t1); !errors.Is(err, ErrInvalidTransition) {
		t.Fatalf("terminal job changed state: %v", err)
	}
}

func TestCloneIsDeep(t *testing.T) {
	code := 3
	j := &Job{Labels: map[string]string{"a": "1"}, ExitCode: &code, Parameters: []byte(`{"x":1}`)}
	c := j.Clone()
	c.Labels["a"] = "2"
	*c.ExitCode = 4
	c.Parameters[2] = 'y'
	if j.Labels["a"] != "1" || *j.ExitCode != 3 || string(j.Parameters) != `{"x":1}` {
		t.Fatalf("clone shares memory with the original: %+v", j)
	}
}
