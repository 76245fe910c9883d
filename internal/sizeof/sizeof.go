// Package sizeof estimates the heap bytes a decoded record holds, so the
// cache can charge each record what it really costs against its budget.
package sizeof

import (
	"reflect"
	"sync"
	"unsafe"
)

// Map entries cost more than key and value: Go's swiss maps keep control
// bytes, group slack and a directory. 16 bytes per slot plus a 1.15 load
// slack is a close upper estimate for small maps.
const mapSlotOverhead = 16

// Of returns the bytes reachable from *p: the value itself and everything
// its strings, slices, maps, pointers and interfaces point to. Memory
// reachable twice through one pointer is counted once; strings are counted
// in full even where other values share them (see Split), so the estimate
// errs high, never low.
//
// The type's layout is compiled once into a plan (the offsets of its
// strings and slices), so sizing a struct record reads string headers
// rather than walking it with reflection.
func Of[T any](p *T) int64 {
	var strs int64
	return Split(p, func(s string) { strs += int64(len(s)) }) + strs
}

// Split is Of without the bytes of strings: it calls str with every
// non-empty string *p holds instead, so that a caller can count a string
// that many values share (the maxminddb reader interns the strings it
// decodes) once.
func Split[T any](p *T, str func(string)) int64 {
	t := reflect.TypeFor[T]()
	w := walker{str: str}
	return int64(t.Size()) + planOf(t).measure(unsafe.Pointer(p), &w)
}

// plan is a struct or array type's pointer-bearing fields, flattened
// through nested structs and arrays.
type plan struct {
	strings []uintptr   // offsets of strings
	slices  []slicePlan // slices whose elements are measured by plan
	others  []other     // maps, pointers, interfaces: measured by reflection
}

type slicePlan struct {
	off      uintptr
	elemSize uintptr
	elem     *plan // nil when elements hold no pointers
}

type other struct {
	off uintptr
	t   reflect.Type
}

var plans sync.Map // reflect.Type -> *plan

func planOf(t reflect.Type) *plan {
	if p, ok := plans.Load(t); ok {
		return p.(*plan)
	}
	p := &plan{}
	p.add(t, 0)
	plans.Store(t, p)
	return p
}

// add appends the fields of a value of type t at offset off.
func (p *plan) add(t reflect.Type, off uintptr) {
	if !hasPointers(t) {
		return
	}
	switch t.Kind() {
	case reflect.String:
		p.strings = append(p.strings, off)
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			p.add(f.Type, off+f.Offset)
		}
	case reflect.Array:
		for i := range t.Len() {
			p.add(t.Elem(), off+uintptr(i)*t.Elem().Size())
		}
	case reflect.Slice:
		sp := slicePlan{off: off, elemSize: t.Elem().Size()}
		if hasPointers(t.Elem()) {
			sp.elem = planOf(t.Elem())
		}
		p.slices = append(p.slices, sp)
	default:
		p.others = append(p.others, other{off, t})
	}
}

// measure returns the bytes the value at base points to.
func (p *plan) measure(base unsafe.Pointer, w *walker) int64 {
	var n int64
	for _, off := range p.strings {
		if s := *(*string)(unsafe.Add(base, off)); s != "" {
			w.str(s)
		}
	}
	for _, s := range p.slices {
		h := (*sliceHeader)(unsafe.Add(base, s.off))
		if h.data == nil {
			continue
		}
		n += int64(h.cap) * int64(s.elemSize)
		if s.elem != nil {
			for i := range h.len {
				n += s.elem.measure(unsafe.Add(h.data, uintptr(i)*s.elemSize), w)
			}
		}
	}
	for _, o := range p.others {
		n += w.indirect(reflect.NewAt(o.t, unsafe.Add(base, o.off)).Elem())
	}
	return n
}

type sliceHeader struct {
	data     unsafe.Pointer
	len, cap int
}

type walker struct {
	seen map[uintptr]bool
	str  func(string)
}

// indirect returns the bytes v points to, excluding v's own inline size.
func (w *walker) indirect(v reflect.Value) int64 {
	switch v.Kind() {
	case reflect.String:
		if s := v.String(); s != "" {
			w.str(s)
		}
		return 0
	case reflect.Pointer:
		if v.IsNil() || w.seen[v.Pointer()] {
			return 0
		}
		if w.seen == nil {
			w.seen = map[uintptr]bool{}
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
