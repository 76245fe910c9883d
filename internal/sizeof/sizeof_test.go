package sizeof

import (
	"testing"
	"unsafe"
)

type inner struct {
	Name string
	Tags []string
}

type rec struct {
	A     string
	N     int
	In    inner
	Arr   [2]inner
	List  []inner
	M     map[string]int
	P     *inner
	Q     *inner // same pointer as P: counted once
	Any   any
	Bytes []byte
}

// TestOf checks the plan-based sizing against a hand count.
func TestOf(t *testing.T) {
	shared := &inner{Name: "xyz"}
	r := rec{
		A:     "hello",
		In:    inner{Name: "ab", Tags: make([]string, 1, 4)},
		Arr:   [2]inner{{Name: "c"}, {Tags: []string{"dd"}}},
		List:  []inner{{Name: "efg"}},
		P:     shared,
		Q:     shared,
		Any:   "str",
		Bytes: make([]byte, 3, 10),
	}
	r.In.Tags[0] = "tag"
	strHdr := int64(unsafe.Sizeof(""))
	want := int64(unsafe.Sizeof(r)) +
		5 + // A
		2 + 4*strHdr + 3 + // In.Name, In.Tags backing (cap 4) and "tag"
		1 + 1*strHdr + 2 + // Arr[0].Name, Arr[1].Tags backing and "dd"
		int64(unsafe.Sizeof(inner{})) + 3 + // List backing and "efg"
		int64(unsafe.Sizeof(inner{})) + 3 + // *P once
		strHdr + 3 + // boxed string in Any and its bytes
		10 // Bytes backing
	if got := Of(&r); got != want {
		t.Errorf("Of = %d, want %d", got, want)
	}
	r.M = map[string]int{"k": 1}
	if got := Of(&r); got <= want {
		t.Errorf("a map adds nothing: %d", got)
	}
}

func TestOfAny(t *testing.T) {
	var v any = map[string]any{"city": map[string]any{"names": map[string]any{"en": "London"}}}
	if got := Of(&v); got < 6+3*48 {
		t.Errorf("Of(map tree) = %d", got)
	}
}

// Split leaves the strings' bytes to its callback, which sees each one.
func TestSplit(t *testing.T) {
	r := rec{A: "hello", In: inner{Name: "ab", Tags: []string{"tag", ""}}, Any: "str"}
	var seen []string
	n := Split(&r, func(s string) { seen = append(seen, s) })
	if total := Of(&r); n != total-5-2-3-3 {
		t.Errorf("Split = %d, Of = %d: want Of less the 13 string bytes", n, total)
	}
	if len(seen) != 4 {
		t.Errorf("strings seen: %q", seen)
	}
}
