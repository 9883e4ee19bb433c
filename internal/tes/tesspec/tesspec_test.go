package tesspec

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const (
	executor = `{"image": "ubuntu:24.04", "command": ["echo", "hi"]}`
	fullTask = `{
		"id": "job-1", "state": "COMPLETE", "name": "n", "description": "d",
		"inputs": [{"url": "s3://b/in", "path": "/data/in", "type": "FILE", "streamable": false},
			{"path": "/data/lit", "content": "x"}],
		"outputs": [{"url": "s3://b/out", "path": "/data/*.txt", "path_prefix": "/data", "type": "DIRECTORY"}],
		"resources": {"cpu_cores": 4, "preemptible": false, "ram_gb": 7.5, "disk_gb": 40, "zones": ["a"],
			"backend_parameters": {"project": "p"}, "backend_parameters_strict": true},
		"executors": [{"image": "ubuntu", "command": ["sh", "-c", "true"], "workdir": "/data",
			"stdin": "/data/in", "stdout": "/tmp/o", "stderr": "/tmp/e", "env": {"A": "1"}, "ignore_error": true}],
		"volumes": ["/vol/A"], "tags": {"WORKFLOW_ID": "w", "with.dot": ""},
		"logs": [{"logs": [{"start_time": "2020-10-02T10:00:00-05:00", "end_time": "x", "stdout": "o", "stderr": "e", "exit_code": 0}],
			"metadata": {"host": "h"}, "start_time": "2020-10-02T10:00:00Z", "end_time": "2020-10-02T11:00:00.5Z",
			"outputs": [{"url": "s3://b/out/a.txt", "path": "/data/a.txt", "size_bytes": "1024"}],
			"system_logs": ["s"]}],
		"creation_time": "2020-10-02T10:00:00Z"}`
	serviceInfo = `{"id": "org.example.hpcgate", "name": "hpcgate", "version": "1",
		"type": {"group": "org.ga4gh", "artifact": "tes", "version": "1.1.0"},
		"organization": {"name": "Example", "url": "https://example.org"},
		"description": "d", "contactUrl": "mailto:a@example.org", "documentationUrl": "https://example.org/doc",
		"createdAt": "2019-06-04T12:58:19Z", "updatedAt": "2019-06-04T12:58:19+02:00", "environment": "test",
		"storage": ["s3://bucket", "job:"], "tesResources_backend_parameters": ["project"]}`
)

func task(members string) string { return `{"executors": [` + executor + `]` + members + `}` }

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		name, view, schema, doc string
		want                    []string // "path: message fragment", in order; none if valid
	}{
		{"smallest task", "FULL", "tesTask", task(""), nil},
		{"every member of a task", "FULL", "tesTask", fullTask, nil},
		{"state not in tesState", "FULL", "tesTask", task(`, "state": "DONE"`), []string{`state: "DONE" is not one of UNKNOWN`}},
		{"no executors", "FULL", "tesTask", `{"id": "a", "state": "QUEUED"}`, []string{"$: missing required member executors"}},
		{"executor without image", "FULL", "tesTask", `{"executors": [{"command": ["true"]}]}`, []string{"executors[0]: missing required member image"}},
		{"unknown member", "FULL", "tesTask", task(`, "priority": 1`), []string{"priority: unknown member priority"}},
		{"unknown nested member", "FULL", "tesTask", task(`, "resources": {"gpus": 1}`), []string{"resources.gpus: unknown member"}},
		{"tags are a map", "FULL", "tesTask", task(`, "tags": {"any key": "v"}`), nil},
		{"a tag is a string", "FULL", "tesTask", task(`, "tags": {"k": 1}`), []string{"tags.k: want string, have integer"}},
		{"wrong type", "FULL", "tesTask", task(`, "resources": {"cpu_cores": "4"}`), []string{"resources.cpu_cores: want integer, have string"}},
		{"fraction for an integer", "FULL", "tesTask", task(`, "resources": {"cpu_cores": 1.5}`), []string{"resources.cpu_cores: want integer, have number"}},
		// TES's times are plain strings whose descriptions say RFC 3339: no format to check.
		{"TES times have no format", "FULL", "tesTask", task(`, "creation_time": "yesterday"`), nil},
		{"integer for a number", "FULL", "tesTask", task(`, "resources": {"ram_gb": 8}`), nil},
		{"null member", "FULL", "tesTask", task(`, "name": null`), []string{"name: want string, have null"}},
		{"exit code beyond int32", "FULL", "tesTask", task(`, "logs": [{"logs": [{"exit_code": 2147483648}], "outputs": []}]`),
			[]string{"logs[0].logs[0].exit_code: 2147483648 is out of the int32 range"}},
		{"size_bytes a number", "FULL", "tesTask", task(`, "logs": [{"logs": [], "outputs": [{"url": "u", "path": "/p", "size_bytes": 1024}]}]`),
			[]string{"logs[0].outputs[0].size_bytes: want string, have integer"}},
		{"size_bytes not decimal", "FULL", "tesTask", task(`, "logs": [{"logs": [], "outputs": [{"url": "u", "path": "/p", "size_bytes": "1e3"}]}]`),
			[]string{`logs[0].outputs[0].size_bytes: "1e3" is not a decimal integer (int64)`}},
		{"every failure", "FULL", "tesTask", `{"state": "DONE", "executors": [{"image": 1, "command": "ls"}], "x": true}`, []string{
			`executors[0].command: want array, have string`, `executors[0].image: want string, have integer`,
			`state: "DONE" is not one of`, `x: unknown member x`}},

		{"service-info", "FULL", "tesServiceInfo", serviceInfo, nil},
		{"service-info, unknown member", "FULL", "tesServiceInfo", strings.Replace(serviceInfo, `"name"`, `"x-y": 1, "name"`, 1), []string{`["x-y"]: unknown member x-y`}},
		{"service-info, bad createdAt", "FULL", "tesServiceInfo", strings.Replace(serviceInfo, "2019-06-04T12:58:19Z", "2019-06-04 12:58", 1),
			[]string{`createdAt: "2019-06-04 12:58" is not an RFC 3339 date-time`}},
		{"service-info, comma in createdAt", "FULL", "tesServiceInfo", strings.Replace(serviceInfo, "12:58:19Z", "12:58:19,5Z", 1),
			[]string{`createdAt: "2019-06-04T12:58:19,5Z" is not an RFC 3339 date-time`}},
		{"service-info, fractional createdAt", "FULL", "tesServiceInfo", strings.Replace(serviceInfo, "12:58:19Z", "12:58:19.123456789Z", 1), nil},
		{"service-info, not tes", "FULL", "tesServiceInfo", strings.Replace(serviceInfo, `"tes"`, `"wes"`, 1), []string{`type.artifact: "wes" is not one of tes`}},
		{"service-info, no organization url", "FULL", "tesServiceInfo", strings.Replace(serviceInfo, `, "url": "https://example.org"`, "", 1),
			[]string{"organization: missing required member url"}},
		{"service-info, extra type member", "FULL", "tesServiceInfo", strings.Replace(serviceInfo, `"group"`, `"x": 1, "group"`, 1),
			[]string{"type.x: unknown member x"}},
		{"service-info, no version", "FULL", "tesServiceInfo", strings.Replace(serviceInfo, `"version": "1",`, "", 1),
			[]string{"$: missing required member version"}},

		{"list", "FULL", "tesListTasksResponse", `{"tasks": [` + fullTask + `], "next_page_token": "t"}`, nil},
		{"list, bad nested task", "FULL", "tesListTasksResponse", `{"tasks": [` + task(`, "state": "DONE"`) + `]}`, []string{`tasks[0].state: "DONE"`}},
		{"list without tasks", "FULL", "tesListTasksResponse", `{}`, []string{"$: missing required member tasks"}},
		{"list, MINIMAL as Validate sees it", "FULL", "tesListTasksResponse", `{"tasks": [{"id": "a", "state": "QUEUED"}]}`,
			[]string{"tasks[0]: missing required member executors"}},
		{"list, MINIMAL", "MINIMAL", "tesListTasksResponse", `{"tasks": [{"id": "a", "state": "QUEUED"}]}`, nil},
		{"MINIMAL task", "MINIMAL", "tesTask", `{"id": "a", "state": "RUNNING"}`, nil},
		{"MINIMAL task with more", "MINIMAL", "tesTask", task(`, "id": "a", "state": "RUNNING"`), []string{"executors: member executors is not in this task view"}},
		{"MINIMAL task without state", "MINIMAL", "tesTask", `{"id": "a"}`, []string{"$: missing required member state"}},
		{"MINIMAL task, bad state", "MINIMAL", "tesTask", `{"id": "a", "state": "DONE"}`, []string{`state: "DONE" is not one of`}},
		{"BASIC task", "BASIC", "tesTask", task(`, "inputs": [{"path": "/a", "url": "s3://b/a"}], "logs": [{"logs": [{"exit_code": 0}], "outputs": []}]`), nil},
		{"BASIC task with FULL members", "BASIC", "tesTask", fullTask, []string{
			"inputs[1].content: member content is not in this task view", "logs[0].logs[0].stderr: member stderr",
			"logs[0].logs[0].stdout: member stdout", "logs[0].system_logs: member system_logs"}},

		{"create", "FULL", "tesCreateTaskResponse", `{"id": "job-1"}`, nil},
		{"create without id", "FULL", "tesCreateTaskResponse", `{}`, []string{"$: missing required member id"}},
		{"create with more", "FULL", "tesCreateTaskResponse", `{"id": "a", "state": "QUEUED"}`, []string{"state: unknown member state"}},
		{"cancel", "FULL", "tesCancelTaskResponse", `{}`, nil},
		{"cancel with a member", "FULL", "tesCancelTaskResponse", `{"ok": true}`, []string{"ok: unknown member ok"}},
		{"cancel not an object", "FULL", "tesCancelTaskResponse", `[]`, []string{"$: want object, have array"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := ValidateView(c.view, c.schema, []byte(c.doc))
			if c.want == nil {
				if err != nil {
					t.Fatalf("want valid, have:\n%v", err)
				}
				return
			}
			var fs Failures
			if !errors.As(err, &fs) {
				t.Fatalf("want Failures, have %v", err)
			}
			if len(fs) != len(c.want) {
				t.Fatalf("want %d failures, have:\n%v", len(c.want), fs)
			}
			for i, w := range c.want {
				if !strings.HasPrefix(fs[i].String(), w) {
					t.Errorf("failure %d: want %q…, have %q", i, w, fs[i])
				}
			}
		})
	}
}

func TestValidateRefuses(t *testing.T) {
	for _, c := range []struct{ view, schema, doc, want string }{
		{"FULL", "Task", `{}`, `no schema "Task"`},
		{"FULL", "Service", `{}`, `no schema "Service"`}, // service-info's own schemas are not TES's
		{"FULL", "tesTask", `{"executors": [`, "not JSON"},
		{"FULL", "tesTask", task("") + `{}`, "goes on after its JSON value"},
		{"DEFAULT", "tesTask", task(""), "no task view"},
	} {
		if err := ValidateView(c.view, c.schema, []byte(c.doc)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %s %s: want an error with %q, have %v", c.view, c.schema, c.doc, c.want, err)
		}
	}
}

// TestSchemas: the spec loads, every schema compiled, and Schemas lists them.
func TestSchemas(t *testing.T) {
	if _, err := load(); err != nil {
		t.Fatal(err)
	}
	names := Schemas()
	for _, n := range []string{"tesTask", "tesExecutor", "tesInput", "tesOutput", "tesResources", "tesState",
		"tesFileType", "tesTaskLog", "tesExecutorLog", "tesOutputFileLog", "tesCreateTaskResponse",
		"tesListTasksResponse", "tesCancelTaskResponse", "tesServiceInfo", "tesServiceType"} {
		if !slices.Contains(names, n) {
			t.Errorf("Schemas() lacks %s: %v", n, names)
		}
	}
	if len(names) != 15 || !slices.IsSorted(names) {
		t.Errorf("Schemas() = %v", names)
	}
}

// TestCompileRefuses: a keyword the validator does not implement is an
// error when the spec is loaded, not a check silently skipped.
func TestCompileRefuses(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"A: {type: string, nullable: true}", "x.yaml:3: unsupported keyword nullable"},
		{"A: {oneOf: [{type: string}]}", "unsupported keyword oneOf"},
		{"A: {type: string, pattern: '^a'}", "unsupported keyword pattern"},
		{"A: {type: string, format: email}", `unsupported format "email"`},
		{"A: {type: 'null'}", `unsupported type "null"`},
		{"A: {type: integer, enum: [1, 2]}", "strings only"},
		{"A: {items: {$ref: '#/components/schemas/B'}, type: array}", "no schema B"},
		{"A: {items: {$ref: 'other.yaml#/components/schemas/B'}, type: array}", "x.yaml:3: unresolvable $ref"},
		{"A: {$ref: '#/components/schemas/A', description: d}", "unsupported keyword $ref"},
		{"A: {allOf: [{type: object}], type: object}", "allOf beside validation keywords"},
		{"A: {type: string, properties: {a: {type: string}}}", "object keywords"},
		{"A: {type: object, items: {type: string}}", "items in a schema"},
	} {
		c2 := &compiler{docs: map[string]map[string]*yaml.Node{}, files: map[string]string{}, memo: map[string]*schema{}}
		err := c2.add("", "x.yaml", []byte("components:\n  schemas:\n    "+c.yaml+"\n"))
		if err == nil {
			err = c2.compileAll("")
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: want an error with %q, have %v", c.yaml, c.want, err)
		}
	}
}
