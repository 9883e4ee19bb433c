package server

import (
	"cmp"
	"encoding/json"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/catalog"
	"github.com/hpcgate/hpcgate/internal/job"
)

// This file is the one place where domain types become wire types.

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func apiJob(j *job.Job) api.Job {
	out := api.Job{
		ID:              j.ID,
		Name:            j.Name,
		Owner:           j.Owner,
		Template:        j.Template,
		TemplateVersion: j.TemplateVersion,
		Environment:     j.Environment,
		State:           string(j.State),
		Reason:          j.Reason,
		Parameters:      j.Parameters,
		Inputs:          j.Inputs,
		Resources:       api.Resources{Nodes: j.Resources.Nodes, CoresPerNode: j.Resources.CoresPerNode, MemoryMB: j.Resources.MemoryMB, WalltimeS: j.Resources.WalltimeS},
		Labels:          j.Labels,
		ParentID:        j.ParentID,
		Detached:        j.Detached,
		Project:         j.Project,
		Account:         j.Account,
		Depth:           j.Depth,
		CreatedAt:       j.CreatedAt.UTC(),
		StartedAt:       timePtr(j.StartedAt),
		FinishedAt:      timePtr(j.FinishedAt),
		ExitCode:        j.ExitCode,
		Error:           j.Error,
	}
	if out.Inputs == nil {
		out.Inputs = map[string]string{}
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	if len(out.Parameters) == 0 {
		out.Parameters = json.RawMessage("{}")
	}
	if j.Usage != nil {
		out.Usage = &api.Usage{CPUSeconds: j.Usage.CPUSeconds, MaxRSSBytes: j.Usage.MaxRSSBytes, WallSeconds: j.Usage.WallSeconds}
	}
	if j.Scheduler != "" {
		out.Backend = &api.Backend{Scheduler: j.Scheduler, ID: j.BackendID}
	}
	for _, st := range j.Steps {
		out.Steps = append(out.Steps, apiStep(st))
	}
	if j.SweepID != "" {
		i := j.SweepIndex
		out.SweepID, out.SweepIndex = j.SweepID, &i
	}
	for _, d := range j.After {
		out.After = append(out.After, api.Dependency(d))
	}
	if j.Notify != nil {
		out.Notify = &api.Notify{URL: j.Notify.URL, Events: j.Notify.Events}
	}
	return out
}

func apiResources(l catalog.Limits) api.Resources {
	return api.Resources{Nodes: l.Nodes, CoresPerNode: l.CoresPerNode, MemoryMB: l.MemoryMB, WalltimeS: l.WalltimeS}
}

func apiTemplate(t *catalog.Template) api.Template {
	out := api.Template{
		Name: t.Name, Version: t.Version, Description: t.Description, Image: t.Image, ImageArchive: t.ImageArchive,
		Command: t.Command, Parameters: t.SchemaJSON(), Outputs: t.Outputs, Environments: t.Environments,
		Resources: api.ResourceLimits{Default: apiResources(t.Resources.Default), Max: apiResources(t.Resources.Max)},
		Adapters:  api.Adapters{Verify: t.Adapters.Verify, Prepare: t.Adapters.Prepare, Collect: t.Adapters.Collect},
		Inputs:    []api.Input{},
	}
	if out.Outputs == nil {
		out.Outputs = []string{}
	}
	if t.Image != "" {
		out.Container = &api.TemplateContainer{Workdir: t.Container.Workdir, Network: t.Container.Network, Gateway: t.Container.Gateway}
	}
	for _, in := range t.Inputs {
		ai := api.Input{Name: in.Name, Path: in.Path, Required: in.Required, MaxSize: int64(in.MaxSize), Description: in.Description, Unpack: in.Unpack}
		if in.Unpack {
			ai.MaxUnpackedSize = cmp.Or(int64(in.MaxUnpackedSize), catalog.DefaultMaxUnpacked)
		}
		out.Inputs = append(out.Inputs, ai)
	}
	return out
}

func apiEnvironment(e *catalog.Environment) api.Environment {
	return api.Environment{
		Name: e.Name, Description: e.Description, Scheduler: e.Scheduler, Partition: e.Partition, Queue: e.Queue,
		ParallelEnv: e.ParallelEnv, ContainerRuntime: e.ContainerRuntime, Images: e.Images, ContainerNetwork: e.ContainerNetwork, Max: apiResources(e.Limits()),
	}
}

func apiEvents(evs []job.Event) []api.Event {
	out := make([]api.Event, len(evs))
	for i, e := range evs {
		out[i] = api.Event{Time: e.Time.UTC(), State: string(e.State), Reason: e.Reason}
	}
	return out
}

func apiStep(st job.Step) api.Step {
	return api.Step{Index: st.Index, StartedAt: st.StartedAt.UTC(), EndedAt: timePtr(st.EndedAt), ExitCode: st.ExitCode, Stdout: st.Stdout, Stderr: st.Stderr}
}

func jobStep(st *api.Step) job.Step {
	return job.Step{Index: st.Index, StartedAt: st.StartedAt, EndedAt: ptrTime(st.EndedAt), ExitCode: st.ExitCode, Stdout: st.Stdout, Stderr: st.Stderr}
}

func ptrTime(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}
