package lvm

import (
	"fmt"
	"strconv"
)

// The LVM2 text metadata is written in libdm's configuration syntax
// (libdm/libdm-config.c): assignments "key = value", sections
// "name { ... }", values that are integers, floats, "strings" with backslash
// escapes, 'strings' without, and one-level [arrays] of those; "#" starts a
// comment. This parser is bounded: the text size is bounded by the caller,
// nesting by maxDepth, and the node count by maxNodes, so hostile metadata
// cannot make it recurse or allocate without limit.

const (
	maxDepth = 16      // LVM writes 5 levels (vg, logical_volumes, lv, segment)
	maxNodes = 1 << 20 // values and sections in one text
)

// ValueKind is the type of a config value.
type ValueKind uint8

const (
	KindInt ValueKind = iota + 1
	KindFloat
	KindString
	KindArray
	KindSection
)

// Value is one config value.
type Value struct {
	Kind ValueKind
	Int  int64
	Str  string // strings; the text of floats
	Arr  []Value
	Sec  *Section
}

// Item is a key and its value, in file order.
type Item struct {
	Key string
	Val Value
}

// Section is a "name { ... }" block, or the whole text.
type Section struct {
	Name  string
	Items []Item
}

// Get returns the value of key in s, or nil.
func (s *Section) Get(key string) *Value {
	for i := range s.Items {
		if s.Items[i].Key == key {
			return &s.Items[i].Val
		}
	}
	return nil
}

// Sub returns the section key in s, or nil.
func (s *Section) Sub(key string) *Section {
	if v := s.Get(key); v != nil && v.Kind == KindSection {
		return v.Sec
	}
	return nil
}

// Sections lists the subsections of s in order.
func (s *Section) Sections() []*Section {
	var out []*Section
	for i := range s.Items {
		if s.Items[i].Val.Kind == KindSection {
			out = append(out, s.Items[i].Val.Sec)
		}
	}
	return out
}

// Str returns a string value; ok is false if key is missing or not a string.
func (s *Section) Str(key string) (string, bool) {
	v := s.Get(key)
	if v == nil || v.Kind != KindString {
		return "", false
	}
	return v.Str, true
}

// Uint returns a non-negative integer value.
func (s *Section) Uint(key string) (uint64, bool) {
	v := s.Get(key)
	if v == nil || v.Kind != KindInt || v.Int < 0 {
		return 0, false
	}
	return uint64(v.Int), true
}

// Strings returns an array of strings (status and flag lists).
func (s *Section) Strings(key string) []string {
	v := s.Get(key)
	if v == nil || v.Kind != KindArray {
		return nil
	}
	var out []string
	for _, e := range v.Arr {
		if e.Kind == KindString {
			out = append(out, e.Str)
		}
	}
	return out
}

// SyntaxError is a parse error at a line of the metadata text.
type SyntaxError struct {
	Line int
	Msg  string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

type parser struct {
	b     []byte
	pos   int
	line  int
	nodes int
}

// ParseConfig parses a text in libdm config syntax.
func ParseConfig(b []byte) (*Section, error) {
	p := &parser{b: b, line: 1}
	root := &Section{}
	if err := p.items(root, 0, false); err != nil {
		return nil, err
	}
	return root, nil
}

func (p *parser) errf(format string, args ...any) error {
	return &SyntaxError{Line: p.line, Msg: fmt.Sprintf(format, args...)}
}

// skip passes whitespace and comments.
func (p *parser) skip() {
	for p.pos < len(p.b) {
		switch c := p.b[p.pos]; {
		case c == '\n':
			p.line++
			p.pos++
		case c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v':
			p.pos++
		case c == '#':
			for p.pos < len(p.b) && p.b[p.pos] != '\n' {
				p.pos++
			}
		case c == 0:
			// LVM stores the text NUL-terminated; a NUL ends it.
			p.b = p.b[:p.pos]
		default:
			return
		}
	}
}

func (p *parser) node() error {
	if p.nodes++; p.nodes > maxNodes {
		return p.errf("more than %d values", maxNodes)
	}
	return nil
}

// items parses "key = value" and "key { ... }" until the end of the text
// (top level) or a closing brace (inner).
func (p *parser) items(s *Section, depth int, inner bool) error {
	if depth > maxDepth {
		return p.errf("sections nested deeper than %d", maxDepth)
	}
	for {
		p.skip()
		if p.pos >= len(p.b) {
			if inner {
				return p.errf("missing } for section %q", s.Name)
			}
			return nil
		}
		if p.b[p.pos] == '}' {
			if !inner {
				return p.errf("unexpected }")
			}
			p.pos++
			return nil
		}
		key := p.ident()
		if key == "" {
			return p.errf("expected a name, found %q", p.b[p.pos])
		}
		if err := p.node(); err != nil {
			return err
		}
		p.skip()
		if p.pos >= len(p.b) {
			return p.errf("unexpected end after %q", key)
		}
		switch p.b[p.pos] {
		case '{':
			p.pos++
			sub := &Section{Name: key}
			if err := p.items(sub, depth+1, true); err != nil {
				return err
			}
			s.Items = append(s.Items, Item{Key: key, Val: Value{Kind: KindSection, Sec: sub}})
		case '=':
			p.pos++
			v, err := p.value(true)
			if err != nil {
				return err
			}
			s.Items = append(s.Items, Item{Key: key, Val: v})
		default:
			return p.errf("expected = or { after %q", key)
		}
	}
}

func isDelim(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', '\f', '\v', '#', '=', '{', '}', '[', ']', ',', '"', '\'', 0:
		return true
	}
	return false
}

func (p *parser) ident() string {
	start := p.pos
	for p.pos < len(p.b) && !isDelim(p.b[p.pos]) {
		p.pos++
	}
	return string(p.b[start:p.pos])
}

func (p *parser) value(arrayOK bool) (Value, error) {
	p.skip()
	if p.pos >= len(p.b) {
		return Value{}, p.errf("missing value")
	}
	if err := p.node(); err != nil {
		return Value{}, err
	}
	switch c := p.b[p.pos]; {
	case c == '[':
		if !arrayOK {
			return Value{}, p.errf("nested array")
		}
		p.pos++
		var arr []Value
		for {
			p.skip()
			if p.pos >= len(p.b) {
				return Value{}, p.errf("missing ]")
			}
			if p.b[p.pos] == ']' {
				p.pos++
				return Value{Kind: KindArray, Arr: arr}, nil
			}
			if p.b[p.pos] == ',' {
				p.pos++
				continue
			}
			v, err := p.value(false)
			if err != nil {
				return Value{}, err
			}
			arr = append(arr, v)
		}
	case c == '"':
		return p.quoted()
	case c == '\'':
		p.pos++
		start := p.pos
		for p.pos < len(p.b) && p.b[p.pos] != '\'' {
			if p.b[p.pos] == '\n' {
				p.line++
			}
			p.pos++
		}
		if p.pos >= len(p.b) {
			return Value{}, p.errf("unterminated string")
		}
		s := string(p.b[start:p.pos])
		p.pos++
		return Value{Kind: KindString, Str: s}, nil
	default:
		tok := p.ident()
		if tok == "" {
			return Value{}, p.errf("unexpected %q", c)
		}
		if n, err := strconv.ParseInt(tok, 10, 64); err == nil {
			return Value{Kind: KindInt, Int: n}, nil
		}
		if _, err := strconv.ParseFloat(tok, 64); err == nil {
			return Value{Kind: KindFloat, Str: tok}, nil
		}
		return Value{}, p.errf("bad value %q", tok)
	}
}

// quoted reads a "string": a backslash escapes the next byte.
func (p *parser) quoted() (Value, error) {
	p.pos++
	var out []byte
	for p.pos < len(p.b) {
		c := p.b[p.pos]
		switch c {
		case '"':
			p.pos++
			return Value{Kind: KindString, Str: string(out)}, nil
		case '\\':
			if p.pos+1 < len(p.b) {
				p.pos++
				c = p.b[p.pos]
			}
		case '\n':
			p.line++
		}
		out = append(out, c)
		p.pos++
	}
	return Value{}, p.errf("unterminated string")
}
