package sched

import "testing"

func TestSafeName(t *testing.T) {
	for in, want := range map[string]string{
		"hello":        "hello",
		"a b;rm -rf /": "a_b_rm_-rf_",
		"$(reboot)":    "_reboot_",
		"":             "j",
		"-x":           "j-x",
		"ünïcode":      "_n_code",
		"0123456789012345678901234567890123456789xyz": "0123456789012345678901234567890123456789",
	} {
		if got := SafeName(in); got != want {
			t.Errorf("SafeName(%q) = %q, want %q", in, got, want)
		}
	}
}
