package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

var cmdImage = &command{
	name:    "image",
	summary: "push and list image archives for templates (admins)",
	args:    "push FILE NAME | list",
	desc:    "Image archives hold container images that no registry serves: an OCI or Docker archive (podman save, docker save) or a SIF file for apptainer. A template names one with image_archive: NAME beside its image:, and a job's agent loads it on a node whose runtime lacks the image, once per node (and per account for rootless podman). Only admins may push or list them.",
	example: "hpcgate image push solver.tar solver-2.tar   # after: podman save -o solver.tar localhost/solver:2\nhpcgate image list",
	subs:    []*command{cmdImagePush, cmdImageList},
}

var cmdImagePush = &command{
	name: "push", summary: "upload an image archive", args: "FILE NAME", minArgs: 2, maxArgs: 2,
	example: "hpcgate image push solver.tar solver-2.tar",
	setup: func(fs *flag.FlagSet) runFunc {
		return func(e *env, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				return err
			}
			if !st.Mode().IsRegular() {
				return fmt.Errorf("%s is not a regular file", args[0])
			}
			h := sha256.New()
			bar := newProgress(e.rawErr, st.Size())
			info, err := c.PutImage(e.ctx, args[1], bar.Reader(io.TeeReader(f, h)), st.Size())
			bar.Done()
			if err != nil {
				return err
			}
			sum := hex.EncodeToString(h.Sum(nil))
			if info.SHA256 != "" && !strings.EqualFold(info.SHA256, sum) {
				return fmt.Errorf("push %s: checksum mismatch: sent sha256 %s, gateway stored %s", args[1], sum, info.SHA256)
			}
			fmt.Fprintf(e.stdout, "pushed image archive %s (%d bytes, sha256 %s)\n", args[1], info.Size, sum)
			return nil
		}
	},
}

var cmdImageList = &command{
	name: "list", summary: "list the image archives", args: "[--json]", minArgs: 0, maxArgs: 0,
	example: "hpcgate image list",
	setup: func(fs *flag.FlagSet) runFunc {
		asJSON := fs.Bool("json", false, "print the JSON list")
		return func(e *env, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			imgs, err := c.Images(e.ctx)
			if err != nil {
				return err
			}
			if *asJSON {
				return printJSON(e.stdout, nonNil(imgs))
			}
			tw := newTable(e.stdout)
			tw.row("NAME", "SIZE", "MODIFIED")
			for _, im := range imgs {
				tw.row(im.Path, fmt.Sprint(im.Size), im.Modified.Format("2006-01-02 15:04"))
			}
			return tw.Flush()
		}
	},
}
