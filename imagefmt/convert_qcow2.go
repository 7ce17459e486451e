package imagefmt

import (
	"context"

	"github.com/vmmount/vmmount/imagefmt/qcow2"
)

// qcow2Sink stores jobs through a streaming qcow2.Writer.
type qcow2Sink struct {
	w *qcow2.Writer
}

func (s *qcow2Sink) unit() int64 { return s.w.ClusterSize() }

// classify decides each cluster: left to the backing file when equal to it,
// zero cluster when all zero over a backing file that is not (spec: v3 zero
// flag), unallocated when all zero without one, compressed when that makes
// it smaller, else stored as is.
func (s *qcow2Sink) classify(j *job, comp *qcow2.Compressor) {
	cs := s.w.ClusterSize()
	nu := int(int64(len(j.buf)) / cs)
	if cap(j.clusters) < nu {
		j.clusters = make([]qcow2.Cluster, nu)
	}
	j.clusters = j.clusters[:nu]
	j.cbuf = j.cbuf[:0]
	type span struct{ i, start, n int }
	var comped []span
	hasBack := j.same != nil
	for i := range nu {
		u := j.buf[int64(i)*cs : int64(i+1)*cs]
		cl := &j.clusters[i]
		*cl = qcow2.Cluster{}
		switch {
		case hasBack && j.same[i]:
			cl.Kind = qcow2.ClusterUnallocated
		case j.zero[i] && hasBack:
			cl.Kind = qcow2.ClusterZero
		case j.zero[i]:
			cl.Kind = qcow2.ClusterUnallocated
		case comp != nil:
			out, ok := comp.Compress(j.scratch, u)
			if ok {
				comped = append(comped, span{i, len(j.cbuf), len(out)})
				j.cbuf = append(j.cbuf, out...)
				j.scratch = out[:0]
				continue
			}
			*cl = qcow2.Cluster{Kind: qcow2.ClusterData, Data: u}
		default:
			*cl = qcow2.Cluster{Kind: qcow2.ClusterData, Data: u}
		}
	}
	// cbuf may have moved while growing: slice it only now.
	for _, sp := range comped {
		j.clusters[sp.i] = qcow2.Cluster{Kind: qcow2.ClusterCompressed, Data: j.cbuf[sp.start : sp.start+sp.n]}
	}
}

func (s *qcow2Sink) write(j *job) error {
	if j.hole {
		return nil
	}
	return s.w.WriteClusters(j.off/s.w.ClusterSize(), j.clusters)
}

func (s *qcow2Sink) close(ctx context.Context) error { return s.w.Close(ctx) }
