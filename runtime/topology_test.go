package runtime_test

import (
	"os"
	"testing"

	"github.com/flowrt/flowrt/runtime"
)

func TestScratch(t *testing.T) {
	flows := []runtime.Flow{
		{Name: "a--b", On: runtime.Trigger{Stream: "$system", Types: []string{`x"y`, "#quot;", "<b>&", "`md`", "end"}}, Sinks: []runtime.Sink{runtime.FileSink("out/\"q\\x\n.jsonl"), runtime.Stdout()}},
		{Name: "a_2Db", On: runtime.On("o"), Steps: []runtime.Step{runtime.Emit(runtime.EmitSpec{Stream: "end", Type: "t"})}, Sinks: []runtime.Sink{runtime.EmitSink(runtime.EmitSpec{Stream: "end", Type: "u"}), runtime.Named("graph")}},
		{Name: "end", On: runtime.Trigger{Stream: "end"}, Sinks: []runtime.Sink{runtime.WithMiddleware(runtime.FileSink("x"), runtime.SinkTimeout(1))}},
	}
	tp := runtime.TopologyOf(flows)
	f, _ := os.Create("/tmp/mm2.mmd")
	tp.Mermaid(f)
	f.Close()
	f, _ = os.Create("/tmp/g2.dot")
	tp.DOT(f)
	f.Close()
}
