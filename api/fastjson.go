package api

// A fast path for the two request bodies every send asks with, /v1/check
// and /v1/check/batch. The strict decoding (decodeStrict) refuses null and
// unknown members at every depth, which takes a decoder of its own per
// contact and per identifier: 7 us a contact, more than the check itself
// once the index answers. The bodies senders really send have a plain
// shape: known members, string values without escapes. This parser reads
// exactly that shape in one pass, and gives up (false) at the first thing
// it does not know: a null, a number, an escape, a member spelled in
// another case, a repeated member, trailing data. The body is then decoded
// by decodeStrict from the start, so every refusal, and every error
// message, is decodeStrict's. A body the fast path accepts decodes to what
// decodeStrict makes of it (TestFastDecodeAgrees).

// fastDecoder is a request that can try the fast path; decodeFast leaves
// the receiver untouched when it returns false.
type fastDecoder interface {
	decodeFast(body []byte) bool
}

type fastParser struct {
	b []byte
	i int
}

func (p *fastParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// byte consumes c after whitespace.
func (p *fastParser) byte(c byte) bool {
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// peek reports whether c comes next, after whitespace, without consuming it.
func (p *fastParser) peek(c byte) bool {
	p.ws()
	return p.i < len(p.b) && p.b[p.i] == c
}

// raw reads a string without escapes or control characters and returns
// its bytes (the body is valid UTF-8, checked before).
func (p *fastParser) raw() ([]byte, bool) {
	if !p.byte('"') {
		return nil, false
	}
	start := p.i
	for p.i < len(p.b) {
		switch c := p.b[p.i]; {
		case c == '"':
			s := p.b[start:p.i]
			p.i++
			return s, true
		case c == '\\' || c < 0x20:
			return nil, false
		}
		p.i++
	}
	return nil, false
}

func (p *fastParser) text(t *text) bool {
	s, ok := p.raw()
	if ok {
		*t = text(s)
	}
	return ok
}

// object reads an object whose members member reads: it is handed each
// member's name, the value next, and reads the value or returns false.
func (p *fastParser) object(member func(name string) bool) bool {
	if !p.byte('{') {
		return false
	}
	if p.byte('}') {
		return true
	}
	for {
		name, ok := p.raw()
		if !ok || !p.byte(':') || !member(string(name)) {
			return false
		}
		if p.byte('}') {
			return true
		}
		if !p.byte(',') {
			return false
		}
	}
}

// array reads an array whose elements element reads.
func (p *fastParser) array(element func() bool) bool {
	if !p.byte('[') {
		return false
	}
	if p.byte(']') {
		return true
	}
	for {
		if p.peek('n') || !element() {
			return false // null, or what the strict decoding should name
		}
		if p.byte(']') {
			return true
		}
		if !p.byte(',') {
			return false
		}
	}
}

// once marks a member as seen and reports whether it was new: a repeated
// member is left to the strict decoding.
func once(seen *uint8, bit uint8) bool {
	if *seen&bit != 0 {
		return false
	}
	*seen |= bit
	return true
}

func (p *fastParser) sendField(f *sendFields, seen *uint8, name string) bool {
	switch name {
	case "namespace":
		return once(seen, 1<<0) && p.text(&f.Namespace)
	case "channel":
		return once(seen, 1<<1) && p.text(&f.Channel)
	case "purpose":
		return once(seen, 1<<2) && p.text(&f.Purpose)
	case "topic":
		return once(seen, 1<<3) && p.text(&f.Topic)
	}
	return false
}

func (p *fastParser) identifiers(ids *identifiers) bool {
	out := identifiers{}
	ok := p.array(func() bool {
		var id identifier
		var seen uint8
		if !p.object(func(name string) bool {
			switch name {
			case "type":
				return once(&seen, 1) && p.text(&id.Type)
			case "value":
				return once(&seen, 2) && p.text(&id.Value)
			}
			return false
		}) {
			return false
		}
		out = append(out, id)
		return true
	})
	if ok {
		*ids = out
	}
	return ok
}

// end reports whether nothing but whitespace is left.
func (p *fastParser) end() bool {
	p.ws()
	return p.i == len(p.b)
}

func (r *checkRequest) decodeFast(body []byte) bool {
	p := fastParser{b: body}
	var out checkRequest
	var seen uint8
	if !p.object(func(name string) bool {
		if name == "identifiers" {
			return once(&seen, 1<<4) && p.identifiers(&out.Identifiers)
		}
		return p.sendField(&out.sendFields, &seen, name)
	}) || !p.end() {
		return false
	}
	*r = out
	return true
}

func (r *batchRequest) decodeFast(body []byte) bool {
	p := fastParser{b: body}
	var out batchRequest
	var seen uint8
	if !p.object(func(name string) bool {
		if name != "contacts" {
			return p.sendField(&out.sendFields, &seen, name)
		}
		if !once(&seen, 1<<4) {
			return false
		}
		contacts := []batchContact{}
		if !p.array(func() bool {
			var c batchContact
			var cs uint8
			if !p.object(func(name string) bool {
				switch name {
				case "ref":
					return once(&cs, 1) && p.text(&c.Ref)
				case "identifiers":
					return once(&cs, 2) && p.identifiers(&c.Identifiers)
				}
				return false
			}) {
				return false
			}
			contacts = append(contacts, c)
			return true
		}) {
			return false
		}
		out.Contacts = contacts
		return true
	}) || !p.end() {
		return false
	}
	*r = out
	return true
}
