package api

import "testing"

func TestTaskOutputDest(t *testing.T) {
	file := TaskOutput{Path: "/out/a.txt", File: "res/a.txt"}
	dir := TaskOutput{Path: "/out/dir", Directory: true, File: "res/dir"}
	glob := TaskOutput{Path: "/out/*.csv", PathPrefix: "/out/", File: "res/csv"}
	tests := []struct {
		o          TaskOutput
		from, want string
		ok         bool
		mount      string
	}{
		{file, "/out/a.txt", "res/a.txt", true, "/out"},
		{file, "/out/b.txt", "", false, "/out"},
		{dir, "/out/dir/x/y.txt", "res/dir/x/y.txt", true, "/out/dir"},
		{dir, "/out/dirty.txt", "", false, "/out/dir"},
		{dir, "/out/dir", "", false, "/out/dir"},
		{glob, "/out/b.csv", "res/csv/b.csv", true, "/out"},
		{glob, "/out/sub/b.csv", "", false, "/out"},
		{glob, "/out/b.txt", "", false, "/out"},
		{TaskOutput{Path: "/data/run*/o.txt", PathPrefix: "/data", File: "r"}, "/data/run1/o.txt", "r/run1/o.txt", true, "/data"},
	}
	for _, tt := range tests {
		got, ok := tt.o.Dest(tt.from)
		if ok != tt.ok || ok && got != tt.want {
			t.Errorf("%+v.Dest(%s) = %q, %v; want %q, %v", tt.o, tt.from, got, ok, tt.want, tt.ok)
		}
		if m := tt.o.MountDir(); m != tt.mount {
			t.Errorf("%+v.MountDir() = %s, want %s", tt.o, m, tt.mount)
		}
	}
}
