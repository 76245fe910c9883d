// Package sizeof estimates the heap bytes a decoded record holds, so the
// cache can charge each record what it really costs against its budget.
package sizeof

import "reflect"

// Map entries cost more than key and value: Go's swiss maps keep control
// bytes, group slack and a directory. 16 bytes per slot plus a 1.15 load
// slack is a close upper estimate for small maps.
const mapSlotOverhead = 16

// Of returns the bytes reachable from *p: the value itself and everything
// its strings, slices, maps, pointers and interfaces point to. Memory
// reachable twice through one pointer is counted once; strings shared with
// other records (the decoder interns some) are counted in full, so the
// estimate errs high, never low.
func Of[T any](p *T) int64 {
	v := reflect.ValueOf(p).Elem()
	w := walker{seen: map[uintptr]bool{}}
	return int64(v.Type().Size()) + w.indirect(v)
}

type walker struct{ seen map[uintptr]bool }

// indirect returns the bytes v points to, excluding v's own inline size.
func (w *walker) indirect(v reflect.Value) int64 {
	switch v.Kind() {
	case reflect.String:
		return int64(v.Len())
	case reflect.Pointer:
		if v.IsNil() || w.seen[v.Pointer()] {
			return 0
		}
		w.seen[v.Pointer()] = true
		e := v.Elem()
		return int64(e.Type().Size()) + w.indirect(e)
	case reflect.Interface:
		if v.IsNil() {
			return 0
		}
		e := v.Elem()
		// A non-pointer dynamic value is boxed on the heap.
		n := w.indirect(e)
		if e.Kind() != reflect.Pointer {
			n += int64(e.Type().Size())
		}
		return n
	case reflect.Slice:
		if v.IsNil() {
			return 0
		}
		n := int64(v.Cap()) * int64(v.Type().Elem().Size())
		if hasPointers(v.Type().Elem()) {
			for i := range v.Len() {
				n += w.indirect(v.Index(i))
			}
		}
		return n
	case reflect.Array:
		var n int64
		if hasPointers(v.Type().Elem()) {
			for i := range v.Len() {
				n += w.indirect(v.Index(i))
			}
		}
		return n
	case reflect.Map:
		if v.IsNil() {
			return 0
		}
		t := v.Type()
		slot := int64(t.Key().Size()+t.Elem().Size()) + mapSlotOverhead
		n := 48 + slot*int64(v.Len())*115/100
		it := v.MapRange()
		for it.Next() {
			n += w.indirect(it.Key()) + w.indirect(it.Value())
		}
		return n
	case reflect.Struct:
		var n int64
		for i := range v.NumField() {
			if f := v.Field(i); hasPointers(f.Type()) {
				n += w.indirect(f)
			}
		}
		return n
	}
	return 0
}

// hasPointers reports whether values of t can reference other memory.
func hasPointers(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.String, reflect.Pointer, reflect.Interface, reflect.Slice, reflect.Map,
		reflect.Chan, reflect.Func, reflect.UnsafePointer:
		return true
	case reflect.Array:
		return t.Len() > 0 && hasPointers(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if hasPointers(t.Field(i).Type) {
				return true
			}
		}
	}
	return false
}
