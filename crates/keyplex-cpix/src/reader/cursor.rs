//! The streaming layer under the CPIX reader: quick-xml's tokenizer, plus the XML 1.0 and
//! Namespaces checks quick-xml leaves to its caller, plus a small element walker.
//!
//! quick-xml finds the markup (start and end tags, text, references, CDATA, comments,
//! processing instructions) but, to stay fast, checks little of what it finds: names, the
//! syntax of attributes, `<` in attribute values, `]]>` in text, references, what may appear
//! outside the root element. A CPIX request is untrusted input, so [`Cursor`] checks all of
//! it, the way the DOM parser keyplex used before (roxmltree) did; the differential tests
//! (`differential.rs`) hold the two to the same answers.
//!
//! Namespaces are resolved here too, not by quick-xml's `NsReader`: its resolver binds a
//! prefix to the attribute value as written, before references are replaced and whitespace
//! normalised (`xmlns="urn:dashif&#58;org:cpix"` would not be the CPIX namespace), and it
//! cannot answer "which prefix does this element see for that URI", which the reader needs
//! to echo foreign elements (`DrmSystemEntry::extensions`, `fragment_xml`).
//!
//! Everything is iterative: an open-element stack, no recursion per nesting level. The bounds
//! on hostile input (`MAX_DEPTH`, `MAX_ATTRIBUTES`, `MAX_NAMESPACE_DECLARATIONS`,
//! `NODES_LIMIT`) are enforced here, as the document is read.

use std::borrow::Cow;

use quick_xml::events::Event;
use quick_xml::reader::Reader;

use super::{MAX_ATTRIBUTES, MAX_DEPTH, MAX_NAMESPACE_DECLARATIONS, NODES_LIMIT};
use crate::error::{CpixError, quoted};
use crate::ns;

/// A namespace, interned per document: two names are in the same namespace exactly when their
/// `Ns` are equal. The namespaces the reader matches on have fixed values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Ns(u32);

impl Ns {
    /// No namespace.
    pub const NONE: Ns = Ns(0);
    pub const CPIX: Ns = Ns(1);
    pub const PSKC: Ns = Ns(2);
    pub const DS: Ns = Ns(3);
    pub const ENC: Ns = Ns(4);
    pub const XML: Ns = Ns(5);
}

/// The URIs behind the fixed [`Ns`] values, in their order.
const KNOWN_URIS: [&str; 6] = ["", ns::CPIX, ns::PSKC, ns::DS, ns::ENC, ns::XML];

/// `http://www.w3.org/2000/xmlns/`: may not be declared (Namespaces in XML 1.0, 3).
const XMLNS_URI: &str = "http://www.w3.org/2000/xmlns/";

/// An element's expanded name: what the reader matches on (never the prefix).
#[derive(Clone, Copy, Debug)]
pub(super) struct Name<'i> {
    pub ns: Ns,
    pub local: &'i str,
}

impl Name<'_> {
    pub fn is(self, ns: Ns, local: &str) -> bool {
        self.ns == ns && self.local == local
    }
}

/// An attribute of the last start tag (namespace declarations are not attributes).
#[derive(Clone, Debug)]
pub(super) struct Attr<'i> {
    pub ns: Ns,
    /// As written; resolved into `ns`.
    prefix: &'i str,
    pub local: &'i str,
    /// With references replaced and whitespace normalised (XML 1.0, 3.3.3).
    pub value: Cow<'i, str>,
}

/// A piece of an element's character data, in document order.
#[derive(Clone, Copy, Debug)]
pub(super) enum Piece<'i> {
    /// Text as written, between markup and references; may hold `\r` (see [`push_text`]).
    Raw(&'i str),
    /// A character or predefined entity reference.
    Char(char),
    /// A CDATA section's content; may hold `\r`.
    CData(&'i str),
}

/// What [`Cursor::event`] reports.
#[derive(Debug)]
pub(super) enum Ev<'i> {
    /// A start tag; its attributes are [`Cursor::attrs`] until the next event. An empty
    /// element (`<x/>`) is reported as a start and an end.
    Start(Name<'i>),
    /// The end of the innermost open element.
    End,
    /// Character data inside the root element.
    Text(Piece<'i>),
    /// The end of a well-formed document.
    Eof,
}

#[derive(Debug)]
struct Open<'i> {
    /// As written, to match the end tag against (XML compares them literally).
    qname: &'i str,
    /// `bindings.len()` before this element's namespace declarations.
    mark: usize,
}

#[derive(Debug)]
struct Binding<'i> {
    /// `""` for the default namespace.
    prefix: &'i str,
    /// [`Ns::NONE`] for `xmlns=""`.
    ns: Ns,
}

/// A pull parser over one document with the checks of a conforming namespace-aware XML 1.0
/// parser (without DTDs, which the caller refuses first).
pub(super) struct Cursor<'i> {
    input: &'i str,
    reader: Reader<&'i [u8]>,
    /// Open elements, the root first.
    open: Vec<Open<'i>>,
    /// Namespace declarations in scope, outermost first, each element's in attribute order.
    bindings: Vec<Binding<'i>>,
    /// Interned namespace URIs other than [`KNOWN_URIS`]: an [`Ns`] indexes the two one after
    /// the other. Documents that use only the known ones (most) allocate nothing for this.
    uris: Vec<Cow<'i, str>>,
    /// Attributes of the last start tag.
    attrs: Vec<Attr<'i>>,
    /// Nodes as a DOM would count them (the document, elements, runs of character data,
    /// comments and processing instructions), against [`NODES_LIMIT`].
    nodes: u32,
    declarations: usize,
    /// The last node was character data: more of it extends that node.
    in_text: bool,
    /// Nothing has been read yet: the only place an XML declaration may be.
    at_start: bool,
    root_seen: bool,
    /// The last start tag was an empty element, whose end is reported next.
    close_empty: bool,
    /// Element names checked lately.
    element_names: NameCache<'i>,
    /// Changes whenever `bindings` does: a prefix resolved while it had the same value
    /// resolves the same way (see [`NameCache`]).
    scope: u32,
}

impl<'i> Cursor<'i> {
    pub fn new(input: &'i str) -> Self {
        let mut reader = Reader::from_str(input);
        let config = reader.config_mut();
        // `--` in comments is refused; end tags are matched here, against the open stack,
        // so quick-xml need not keep copies of the names.
        config.check_comments = true;
        config.check_end_names = false;
        Cursor {
            input,
            reader,
            open: Vec::with_capacity(16),
            bindings: Vec::with_capacity(8),
            uris: Vec::new(),
            attrs: Vec::with_capacity(8),
            nodes: 1,
            declarations: 0,
            in_text: false,
            at_start: true,
            root_seen: false,
            close_empty: false,
            element_names: NameCache::default(),
            scope: 0,
        }
    }

    // -----------------------------------------------------------------------------------------
    // The element walker: what the CPIX reader uses.

    /// Reads the prolog and the root element's start tag.
    pub fn root(&mut self) -> Result<Name<'i>, CpixError> {
        loop {
            match self.event()? {
                Ev::Start(name) => return Ok(name),
                // `event` refuses text outside the root and a document without one.
                Ev::End | Ev::Text(_) | Ev::Eof => {}
            }
        }
    }

    /// The child elements of the element last started.
    pub fn children(&self) -> Children {
        Children {
            depth: self.open.len(),
            done: false,
        }
    }

    /// Reads the rest of the element last started and returns its own character data
    /// (child elements skipped), not trimmed.
    pub fn text(&mut self) -> Result<Cow<'i, str>, CpixError> {
        let depth = self.open.len();
        let mut text = Cow::Borrowed("");
        while self.open.len() >= depth {
            match self.event()? {
                Ev::Text(piece) if self.open.len() == depth => push_piece(&mut text, piece),
                Ev::Text(_) | Ev::Start(_) | Ev::End => {}
                Ev::Eof => return Err(self.error("the document ends inside an element")),
            }
        }
        Ok(text)
    }

    /// After the root element: comments, processing instructions and whitespace only.
    pub fn finish(&mut self) -> Result<(), CpixError> {
        self.skip_to(0)?;
        loop {
            if let Ev::Eof = self.event()? {
                return Ok(());
            }
        }
    }

    /// Attribute `local` (in no namespace) of the last start tag.
    pub fn attr(&self, local: &str) -> Option<Cow<'i, str>> {
        self.attrs
            .iter()
            .find(|a| a.ns == Ns::NONE && a.local == local)
            .map(|a| a.value.clone())
    }

    /// All attributes of the last start tag, in document order.
    pub fn attrs(&self) -> &[Attr<'i>] {
        &self.attrs
    }

    /// The URI of `ns`, `None` for no namespace.
    pub fn uri(&self, ns: Ns) -> Option<&str> {
        match ns {
            Ns::NONE => None,
            Ns(i) => match (i as usize).checked_sub(KNOWN_URIS.len()) {
                None => KNOWN_URIS.get(i as usize).copied(),
                Some(other) => self.uris.get(other).map(|u| u.as_ref()),
            },
        }
    }

    /// The prefix the innermost open element sees bound to `ns`: the first declaration in
    /// scope, innermost element first and each element's in attribute order, that an inner
    /// one does not hide. `None` when there is none or it is the default namespace (as DOM
    /// parsers answer `lookup_prefix`; `fragment_xml`'s output depends on this order).
    pub fn lookup_prefix(&self, ns: Ns) -> Option<&'i str> {
        if ns == Ns::XML {
            return Some("xml");
        }
        let mut end = self.bindings.len();
        for open in self.open.iter().rev() {
            let (level, inner) = self
                .bindings
                .get(open.mark..)
                .unwrap_or_default()
                .split_at(end.saturating_sub(open.mark));
            for binding in level {
                if binding.ns == ns && !inner.iter().any(|b| b.prefix == binding.prefix) {
                    return Some(binding.prefix).filter(|p| !p.is_empty());
                }
            }
            end = open.mark;
        }
        None
    }

    /// Reads on until the open-element stack is `depth` deep.
    fn skip_to(&mut self, depth: usize) -> Result<(), CpixError> {
        while self.open.len() > depth {
            if let Ev::Eof = self.event()? {
                return Err(self.error("the document ends inside an element"));
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Events

    /// The next event, checked. Comments, processing instructions and the XML declaration
    /// are checked and not reported; so is whitespace outside the root element.
    pub fn event(&mut self) -> Result<Ev<'i>, CpixError> {
        if self.close_empty {
            self.close_empty = false;
            self.end_element();
            return Ok(Ev::End);
        }
        loop {
            let at_start = std::mem::take(&mut self.at_start);
            let event = match self.reader.read_event() {
                Ok(event) => event,
                Err(e) => return Err(self.parse_error(&e)),
            };
            match event {
                Event::Start(e) => {
                    let (content, qname) = (self.span(&e)?, self.span(e.name().as_ref())?);
                    return self.start(content, qname, false).map(Ev::Start);
                }
                Event::Empty(e) => {
                    let (content, qname) = (self.span(&e)?, self.span(e.name().as_ref())?);
                    let name = self.start(content, qname, true)?;
                    self.close_empty = true;
                    return Ok(Ev::Start(name));
                }
                Event::End(e) => {
                    let name = self.span(&e)?;
                    match self.open.last() {
                        Some(open) if open.qname == name => {}
                        Some(open) => {
                            // `</:x>` is the one misspelt name roxmltree, the parser before,
                            // took for `</x>`: say why it is refused.
                            split_qname(name).map_err(|m| self.error(&m))?;
                            let expected = open.qname;
                            return Err(self.error(&format!(
                                "end tag </{}> does not match start tag <{}>",
                                quoted(name),
                                quoted(expected)
                            )));
                        }
                        None => return Err(self.error("end tag outside the root element")),
                    }
                    self.end_element();
                    return Ok(Ev::End);
                }
                Event::Text(e) => {
                    let text = self.span(&e)?;
                    if self.open.is_empty() {
                        // Between the prolog's and epilog's markup: only whitespace.
                        if !text.bytes().all(is_space) {
                            return Err(self.error("text outside the root element"));
                        }
                        continue;
                    }
                    // `]]>` only ends a CDATA section (XML 1.0, 2.4).
                    // Most text is the whitespace between tags, a few bytes: a plain search
                    // (core's) costs less there than setting up a vector one.
                    if text.as_bytes().contains(&b'>') && text.contains("]]>") {
                        return Err(self.error("']]>' in character data"));
                    }
                    self.text_node()?;
                    return Ok(Ev::Text(Piece::Raw(text)));
                }
                Event::GeneralRef(e) => {
                    let body = self.span(&e)?;
                    if self.open.is_empty() {
                        return Err(self.error("a reference outside the root element"));
                    }
                    let c = reference(body).map_err(|m| self.error(&m))?;
                    self.text_node()?;
                    return Ok(Ev::Text(Piece::Char(c)));
                }
                Event::CData(e) => {
                    let text = self.span(&e)?;
                    if self.open.is_empty() {
                        return Err(self.error("a CDATA section outside the root element"));
                    }
                    // Even an empty section is character data (a text node in a DOM).
                    self.text_node()?;
                    return Ok(Ev::Text(Piece::CData(text)));
                }
                Event::Comment(_) => self.node()?,
                Event::PI(e) => {
                    let content = self.span(&e)?;
                    self.processing_instruction(content)?;
                }
                Event::Decl(e) => {
                    // quick-xml reports `<?xml` followed by any whitespace, or alone, as a
                    // declaration. Only `<?xml ` at the very start is one; elsewhere it is
                    // refused, and `<?xml?>` or `<?xml\t…?>` are processing instructions
                    // with the target `xml` (as roxmltree, the DOM parser before, took them).
                    let content = self.span(&e)?;
                    if content.starts_with("xml ") {
                        if !at_start {
                            return Err(self.error("an XML declaration not at the start"));
                        }
                        declaration(content).map_err(|m| self.error(&m))?;
                    } else {
                        self.processing_instruction(content)?;
                    }
                }
                // `<!DOCTYPE` is refused before parsing; quick-xml also takes other spellings
                // (`<!doctype`) for one, which XML does not: invalid markup.
                Event::DocType(_) => return Err(self.error("invalid markup '<!'")),
                Event::Eof => {
                    if !self.open.is_empty() {
                        return Err(self.error("the document ends inside an element"));
                    }
                    if !self.root_seen {
                        return Err(self.error("no root element"));
                    }
                    return Ok(Ev::Eof);
                }
            }
        }
    }

    /// A start tag: `content` is what lies between `<` and `>` (or `/>`), starting with
    /// `qname` (quick-xml's element name: up to the first white space).
    fn start(
        &mut self,
        content: &'i str,
        qname: &'i str,
        empty: bool,
    ) -> Result<Name<'i>, CpixError> {
        if self.open.is_empty() {
            if self.root_seen {
                return Err(self.error("a second root element"));
            }
            self.root_seen = true;
        }
        // Nesting deeper than MAX_DEPTH (empty elements not counted, as `check_markup`
        // counted): the open stack and the scope lookups stay small.
        if !empty && self.open.len() >= MAX_DEPTH {
            return Err(CpixError::Xml(format!(
                "elements nested deeper than {MAX_DEPTH} levels"
            )));
        }
        self.node()?;
        let (prefix, local, slot) = self
            .element_names
            .split(qname)
            .map_err(|m| self.error(&m))?;
        let mut rest = content.get(qname.len()..).unwrap_or_default();

        self.attrs.clear();
        let mark = self.bindings.len();
        let mut count = 0usize;
        while let Some(attr) = next_attribute(&mut rest).map_err(|m| self.error(&m))? {
            count += 1;
            if count > MAX_ATTRIBUTES {
                return Err(CpixError::Xml(format!(
                    "an element has more than {MAX_ATTRIBUTES} attributes"
                )));
            }
            let value = if attr.special {
                attribute_value(attr.value).map_err(|m| self.error(&m))?
            } else {
                Cow::Borrowed(attr.value)
            };
            if attr.prefix == "xmlns" {
                self.declare(mark, attr.local, value)?;
            } else if attr.local == "xmlns" {
                if !attr.prefix.is_empty() {
                    // Some parsers take `p:xmlns` for a default namespace declaration.
                    return Err(self.error(&format!(
                        "the attribute {}:xmlns is ambiguous",
                        quoted(attr.prefix)
                    )));
                }
                self.declare(mark, "", value)?;
            } else {
                self.attrs.push(Attr {
                    ns: Ns::NONE,
                    prefix: attr.prefix,
                    local: attr.local,
                    value,
                });
            }
        }
        self.open.push(Open { qname, mark });

        let ns = match prefix {
            "xmlns" => return Err(self.error("an element name with the prefix xmlns")),
            // roxmltree refused `xml:` element names too; CPIX has none.
            "xml" => return Err(self.error("an element name with the prefix xml")),
            // Sibling elements repeat their names in the same scope: the namespace their
            // name's slot remembers for this scope is the one `resolve` would find.
            _ => match self.element_names.resolved(slot, self.scope) {
                Some(ns) => ns,
                None => {
                    let ns = self.resolve(prefix)?;
                    self.element_names.remember_resolved(slot, self.scope, ns);
                    ns
                }
            },
        };
        // Attribute prefixes are resolved once all of the element's declarations are known
        // (they apply to its own names).
        for i in 0..self.attrs.len() {
            let prefix = self.attrs.get(i).map_or("", |a| a.prefix);
            let attr_ns = match prefix {
                // Unprefixed attributes are in no namespace (Namespaces in XML 1.0, 6.2).
                "" => Ns::NONE,
                "xml" => Ns::XML,
                p => self.resolve(p)?,
            };
            let (earlier, this) = self.attrs.split_at_mut(i);
            let Some(attr) = this.first_mut() else { break };
            attr.ns = attr_ns;
            // Attributes are unique by expanded name (Namespaces in XML 1.0, 6.3): `a:x` and
            // `b:x` clash when `a` and `b` are bound to the same URI.
            if earlier
                .iter()
                .any(|a| a.ns == attr_ns && a.local == attr.local)
            {
                let local = attr.local;
                return Err(self.error(&format!("duplicate attribute {}", quoted(local))));
            }
        }
        self.in_text = false;
        Ok(Name { ns, local })
    }

    /// A namespace declaration on the element being started (`prefix` `""`: the default).
    fn declare(
        &mut self,
        mark: usize,
        prefix: &'i str,
        uri: Cow<'i, str>,
    ) -> Result<(), CpixError> {
        self.declarations += 1;
        if self.declarations > MAX_NAMESPACE_DECLARATIONS {
            return Err(CpixError::Xml(format!(
                "the document has more than {MAX_NAMESPACE_DECLARATIONS} namespace declarations"
            )));
        }
        let bad = |what: &str| {
            let colon = if prefix.is_empty() { "" } else { ":" };
            self.error(&format!("{what} (xmlns{colon}{prefix})"))
        };
        if uri == XMLNS_URI {
            return Err(bad("the xmlns namespace may not be declared"));
        }
        let is_xml = uri == ns::XML;
        match prefix {
            "xml" if !is_xml => return Err(bad("the prefix xml is bound to its own namespace")),
            // Declaring `xml` as itself is allowed and changes nothing.
            "xml" => return Ok(()),
            "xmlns" => return Err(bad("the prefix xmlns may not be declared")),
            _ if is_xml => return Err(bad("the xml namespace is bound to the prefix xml only")),
            "" => {}
            // Undeclaring a prefix is XML 1.1 only (Namespaces in XML 1.0, 3).
            _ if uri.is_empty() => return Err(bad("an empty namespace name for a prefix")),
            _ => {}
        }
        if self
            .bindings
            .get(mark..)
            .unwrap_or_default()
            .iter()
            .any(|b| b.prefix == prefix)
        {
            return Err(self.error(&format!(
                "duplicate namespace declaration for {}",
                if prefix.is_empty() {
                    "the default namespace"
                } else {
                    prefix
                }
            )));
        }
        let ns = self.intern(uri);
        self.bindings.push(Binding { prefix, ns });
        self.scope = self.scope.wrapping_add(1);
        Ok(())
    }

    fn intern(&mut self, uri: Cow<'i, str>) -> Ns {
        let known = KNOWN_URIS.iter().position(|u| *u == uri);
        let index = match known.or_else(|| {
            let other = self.uris.iter().position(|u| *u == uri)?;
            Some(KNOWN_URIS.len() + other)
        }) {
            Some(i) => i,
            None => {
                self.uris.push(uri);
                KNOWN_URIS.len() + self.uris.len() - 1
            }
        };
        // At most 6 + MAX_NAMESPACE_DECLARATIONS entries.
        Ns(u32::try_from(index).unwrap_or(u32::MAX))
    }

    /// The namespace of an element name's `prefix` (`""`: the default namespace).
    fn resolve(&self, prefix: &str) -> Result<Ns, CpixError> {
        match self.bindings.iter().rev().find(|b| same(b.prefix, prefix)) {
            Some(b) => Ok(b.ns),
            None if prefix.is_empty() => Ok(Ns::NONE),
            None => Err(self.error(&format!(
                "the namespace prefix {} is not declared",
                quoted(prefix)
            ))),
        }
    }

    fn end_element(&mut self) {
        if let Some(open) = self.open.pop()
            && open.mark < self.bindings.len()
        {
            self.bindings.truncate(open.mark);
            self.scope = self.scope.wrapping_add(1);
        }
        self.in_text = false;
    }

    /// `<?target content?>`: the target must be a name (XML 1.0, 2.6).
    fn processing_instruction(&mut self, content: &str) -> Result<(), CpixError> {
        if !content.chars().next().is_some_and(is_name_start) {
            return Err(self.error("a processing instruction without a target name"));
        }
        self.node()
    }

    fn text_node(&mut self) -> Result<(), CpixError> {
        if !self.in_text {
            self.node()?;
            self.in_text = true;
        }
        Ok(())
    }

    fn node(&mut self) -> Result<(), CpixError> {
        self.in_text = false;
        self.nodes += 1;
        if self.nodes > NODES_LIMIT {
            return Err(CpixError::Xml(format!(
                "the document has more than {NODES_LIMIT} nodes"
            )));
        }
        Ok(())
    }

    /// The input text of an event: quick-xml reading from a `&str` hands out slices of it.
    fn span(&self, bytes: &[u8]) -> Result<&'i str, CpixError> {
        let start = (bytes.as_ptr() as usize).wrapping_sub(self.input.as_ptr() as usize);
        match start
            .checked_add(bytes.len())
            .and_then(|end| self.input.get(start..end))
        {
            Some(text) => Ok(text),
            None => Err(outside_input()),
        }
    }

    #[cold]
    fn parse_error(&self, e: &quick_xml::Error) -> CpixError {
        CpixError::Xml(format!("{e} (at byte {})", self.reader.error_position()))
    }

    #[cold]
    fn error(&self, message: &str) -> CpixError {
        CpixError::Xml(format!(
            "{message} (at byte {})",
            self.reader.buffer_position()
        ))
    }
}

#[cold]
fn outside_input() -> CpixError {
    CpixError::Xml("internal error: an event outside the input".into())
}

/// Iterates the child elements of one element; see [`Cursor::children`].
pub(super) struct Children {
    /// The open-element depth inside the parent.
    depth: usize,
    done: bool,
}

impl Children {
    /// The next child element's start, or `None` once the parent's end tag has been read.
    /// Whatever the caller left unread of the previous child is skipped first, so a caller
    /// reads only the children it wants and may stop reading any of them early.
    pub fn next<'i>(&mut self, cur: &mut Cursor<'i>) -> Result<Option<Name<'i>>, CpixError> {
        if self.done {
            return Ok(None);
        }
        cur.skip_to(self.depth)?;
        loop {
            match cur.event()? {
                Ev::Start(name) => return Ok(Some(name)),
                Ev::End => {
                    self.done = true;
                    return Ok(None);
                }
                Ev::Text(_) => {}
                Ev::Eof => return Err(cur.error("the document ends inside an element")),
            }
        }
    }
}

/// `a == b`, looking at the last bytes before comparing the rest: the strings compared in
/// the hot paths (prefixes, element names, UUIDs) mostly have the same length and, when they
/// differ, mostly differ there.
#[inline]
pub(super) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.as_bytes().last() == b.as_bytes().last() && a == b
}

// ---------------------------------------------------------------------------------------------
// Lexical checks

/// XML white space (`S`): not Unicode's.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn is_name_start(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphabetic() || c == '_' || c == ':';
    }
    matches!(c as u32,
        0xC0..=0xD6
        | 0xD8..=0xF6
        | 0xF8..=0x2FF
        | 0x370..=0x37D
        | 0x37F..=0x1FFF
        | 0x200C..=0x200D
        | 0x2070..=0x218F
        | 0x2C00..=0x2FEF
        | 0x3001..=0xD7FF
        | 0xF900..=0xFDCF
        | 0xFDF0..=0xFFFD
        | 0x10000..=0xEFFFF)
}

fn is_name_char(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-' | '.');
    }
    is_name_start(c) || matches!(c as u32, 0xB7 | 0x300..=0x36F | 0x203F..=0x2040)
}

// Byte classes for scanning start tags: one table lookup per byte.
/// XML white space (`S`).
const SPACE: u8 = 1;
/// An ASCII name character other than `:`.
const NAME: u8 = 2;
/// An ASCII name start character other than `:`.
const NAME_START: u8 = 4;
const COLON: u8 = 8;
/// Not ASCII: part of a name, checked by the general rules.
const HIGH: u8 = 16;
/// Needs normalising in an attribute value: `&`, `\t`, `\n`, `\r`.
const SPECIAL: u8 = 32;
/// `<`: not allowed in an attribute value.
const LT: u8 = 64;

/// The classes of byte `b`.
#[inline(always)]
#[allow(clippy::indexing_slicing)] // a byte indexes a table of 256
fn class(b: u8) -> u8 {
    CLASSES[usize::from(b)]
}

/// [`class_of`] of every byte, looked up (one load per byte of every name and value, instead
/// of a chain of range comparisons).
#[allow(clippy::indexing_slicing)] // b < 256
static CLASSES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = class_of(b as u8);
        b += 1;
    }
    table
};

const fn class_of(b: u8) -> u8 {
    match b {
        b'a'..=b'z' | b'A'..=b'Z' | b'_' => NAME | NAME_START,
        b'0'..=b'9' | b'-' | b'.' => NAME,
        b':' => COLON,
        b' ' => SPACE,
        b'\t' | b'\n' | b'\r' => SPACE | SPECIAL,
        b'&' => SPECIAL,
        b'<' => LT,
        0x80..=0xFF => HIGH,
        _ => 0,
    }
}

/// The qualified name at the start of `s`, up to the first byte that cannot be part of a
/// name: `(prefix, local, length)`, checked to be one (name characters only, at most one
/// colon, both parts non-empty and starting with a name start character). Names are ASCII in
/// practice: checked byte by byte, with the general rules for the others.
fn qname_prefix(s: &str) -> Result<(&str, &str, usize), String> {
    // One pass: where the name ends and which byte classes it holds (with those of the byte
    // after it, which has none of the classes looked at below).
    let bytes = s.as_bytes();
    let mut seen = 0u8;
    let len = bytes
        .iter()
        .position(|&b| {
            let c = class(b);
            seen |= c;
            c & (NAME | COLON | HIGH) == 0
        })
        .unwrap_or(bytes.len());
    let name = s.get(..len).unwrap_or_default();
    // Where the colon is, looked for only in a name that has one: most (attribute names)
    // have none, and tracking it in the loop above costs every byte of every name.
    let (prefix, local) = if seen & COLON == 0 {
        ("", name)
    } else {
        // Byte loops: names are short, shorter than a vector search pays for.
        let colon = name.bytes().position(|b| b == b':');
        let split = colon.and_then(|at| Some((name.get(..at)?, name.get(at + 1..)?)));
        match split {
            Some((_, local)) if local.bytes().any(|b| b == b':') => {
                return Err(invalid_name(name));
            }
            Some(("", _)) => {
                return Err(format!("the name {:?} has an empty prefix", quoted(name)));
            }
            Some(split) => split,
            None => return Err(invalid_name(name)),
        }
    };
    let valid = if seen & HIGH == 0 {
        // ASCII: every byte is a name character; the first of each part must start a name.
        let starts = |part: &str| {
            part.bytes()
                .next()
                .is_some_and(|b| class(b) & NAME_START != 0)
        };
        starts(local) && (prefix.is_empty() || starts(prefix))
    } else {
        let valid_part = |part: &str| {
            let mut chars = part.chars();
            chars.next().is_some_and(is_name_start) && chars.all(is_name_char)
        };
        valid_part(local) && (prefix.is_empty() || valid_part(prefix))
    };
    if !valid {
        return Err(invalid_name(name));
    }
    Ok((prefix, local, len))
}

/// Splits `name`, which must be a qualified name and nothing else.
fn split_qname(name: &str) -> Result<(&str, &str), String> {
    match qname_prefix(name)? {
        (prefix, local, len) if len == name.len() => Ok((prefix, local)),
        _ => Err(invalid_name(name)),
    }
}

#[cold]
fn invalid_name(name: &str) -> String {
    format!("invalid name {:?}", quoted(name))
}

/// `s` without its leading XML white space.
fn skip_space(s: &str) -> &str {
    let n = s.bytes().take_while(|&b| class(b) & SPACE != 0).count();
    s.get(n..).unwrap_or_default()
}

/// Element names checked lately, with the length of their prefix. Sibling elements repeat
/// their names, so most names equal one checked a moment ago: comparing costs less than
/// checking again. (Attribute names are short and mostly unprefixed: checking them costs
/// about what a lookup does.) The slots start empty, and an empty name is never a name.
///
/// Each slot also remembers the namespace its prefix resolved to, and in which scope (the
/// cursor's `scope`, which changes with every change to the namespace declarations in
/// scope): in the same scope, the same prefix resolves the same way.
#[derive(Default)]
struct NameCache<'i> {
    names: [NameSlot<'i>; 8],
    /// Where the next new name goes.
    next: usize,
}

#[derive(Default, Clone, Copy)]
struct NameSlot<'i> {
    name: &'i str,
    prefix_len: usize,
    /// `(scope, namespace)`: what the prefix resolved to, when last resolved.
    resolved: Option<(u32, Ns)>,
}

impl<'i> NameCache<'i> {
    fn find(&self, qname: &str) -> Option<(&'i str, &'i str, usize)> {
        let (slot, entry) = self
            .names
            .iter()
            .enumerate()
            .find(|(_, e)| !e.name.is_empty() && same(e.name, qname))?;
        let prefix = entry.name.get(..entry.prefix_len)?;
        let local = entry
            .name
            .get(entry.prefix_len + usize::from(entry.prefix_len > 0)..)?;
        Some((prefix, local, slot))
    }

    fn remember(&mut self, qname: &'i str, prefix: &str) -> usize {
        let slot = self.next % self.names.len();
        if let Some(entry) = self.names.get_mut(slot) {
            *entry = NameSlot {
                name: qname,
                prefix_len: prefix.len(),
                resolved: None,
            };
        }
        self.next = self.next.wrapping_add(1);
        slot
    }

    /// [`split_qname`], remembered; with the name's slot.
    fn split(&mut self, qname: &'i str) -> Result<(&'i str, &'i str, usize), String> {
        if let Some(split) = self.find(qname) {
            return Ok(split);
        }
        let (prefix, local) = split_qname(qname)?;
        let slot = self.remember(qname, prefix);
        Ok((prefix, local, slot))
    }

    /// The namespace the prefix of the name in `slot` resolved to in `scope`, if it was.
    fn resolved(&self, slot: usize, scope: u32) -> Option<Ns> {
        match self.names.get(slot)?.resolved {
            Some((when, ns)) if when == scope => Some(ns),
            _ => None,
        }
    }

    fn remember_resolved(&mut self, slot: usize, scope: u32, ns: Ns) {
        if let Some(entry) = self.names.get_mut(slot) {
            entry.resolved = Some((scope, ns));
        }
    }
}

/// An attribute as written in a start tag.
struct RawAttr<'i> {
    prefix: &'i str,
    local: &'i str,
    value: &'i str,
    /// The value holds references or white space to normalise ([`attribute_value`]).
    special: bool,
}

/// The next attribute of a start tag: `rest` is what follows the element name (or the
/// previous attribute). `S Name S? '=' S? ('"' [^<"]* '"' | "'" [^<']* "'")`.
fn next_attribute<'i>(rest: &mut &'i str) -> Result<Option<RawAttr<'i>>, String> {
    let trimmed = skip_space(rest);
    if trimmed.is_empty() {
        *rest = trimmed;
        return Ok(None);
    }
    if trimmed.len() == rest.len() {
        return Err("attributes must be separated by whitespace".into());
    }
    let (prefix, local, name_len) = qname_prefix(trimmed)?;
    let (name, after) = trimmed.split_at(name_len);
    let Some(after) = skip_space(after).strip_prefix('=') else {
        return Err(format!("attribute {:?} without a value", quoted(name)));
    };
    let after = skip_space(after);
    let quote = match after.bytes().next() {
        Some(q @ (b'"' | b'\'')) => q,
        _ => {
            return Err(format!(
                "the value of attribute {:?} is not quoted",
                quoted(name)
            ));
        }
    };
    let body = after.get(1..).unwrap_or_default();
    let closed = scan_value(body.as_bytes(), quote)
        .and_then(|(end, classes)| Some((body.get(..end)?, body.get(end + 1..)?, classes)));
    let Some((value, tail, classes)) = closed else {
        return Err(format!(
            "the value of attribute {:?} is not closed",
            quoted(name)
        ));
    };
    if classes & LT != 0 {
        return Err(format!("'<' in the value of attribute {:?}", quoted(name)));
    }
    *rest = tail;
    Ok(Some(RawAttr {
        prefix,
        local,
        value,
        special: classes & SPECIAL != 0,
    }))
}

/// Where the attribute value at the start of `body` ends (the first `quote`), with the
/// classes ([`class`]) of its bytes when it holds `<`, `&`, `\t`, `\n` or `\r` (0 when it
/// holds none: the only classes the caller looks at are [`LT`] and [`SPECIAL`]).
///
/// Eight bytes at a time, looking for any of those or the quote in one test per word: values
/// are short (UUIDs, names, numbers), and three vector searches (`memchr`) cost more in
/// setting up than this costs in all. Control characters other than `\t`, `\n` and `\r`
/// cannot occur (`first_non_xml_char` refused them), so a byte below 0x20 is one of those.
fn scan_value(body: &[u8], quote: u8) -> Option<(usize, u8)> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH_BITS: u64 = u64::from_ne_bytes([0x80; 8]);
    // Non-zero when some byte of `x` is below `n` (n <= 0x80), exactly as to whether any is.
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH_BITS;
    let has = |x: u64, b: u8| below(x ^ (ONES * u64::from(b)), 1);
    let mut classes = 0u8;
    let mut at = 0;
    while let Some(word) = body.get(at..).and_then(|rest| rest.first_chunk::<8>()) {
        let x = u64::from_ne_bytes(*word);
        if has(x, quote) | has(x, b'<') | has(x, b'&') | below(x, 0x20) != 0 {
            for (i, &b) in word.iter().enumerate() {
                if b == quote {
                    return Some((at + i, classes));
                }
                classes |= class(b);
            }
        }
        at += 8;
    }
    for (i, &b) in body.get(at..).unwrap_or_default().iter().enumerate() {
        if b == quote {
            return Some((at + i, classes));
        }
        classes |= class(b);
    }
    None
}

/// An attribute value as the application sees it (XML 1.0, 3.3.3): references replaced,
/// each `\t`, `\n`, `\r` and `\r\n` as written turned into one space.
fn attribute_value(raw: &str) -> Result<Cow<'_, str>, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find(['&', '\t', '\n', '\r']) {
        let (plain, special) = rest.split_at(at);
        out.push_str(plain);
        if let Some(after) = special.strip_prefix('&') {
            let Some((body, tail)) = after.split_once(';') else {
                return Err("a reference without ';'".into());
            };
            out.push(reference(body)?);
            rest = tail;
        } else {
            out.push(' ');
            rest = special
                .strip_prefix("\r\n")
                .or_else(|| special.get(1..))
                .unwrap_or_default();
        }
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

/// The character a reference stands for; `body` is what lies between `&` and `;`. Only
/// character references and the five predefined entities exist without a DTD.
fn reference(body: &str) -> Result<char, String> {
    let code = if let Some(hex) = body.strip_prefix("#x") {
        hex.bytes()
            .all(|b| b.is_ascii_hexdigit())
            .then(|| u32::from_str_radix(hex, 16).ok())
            .flatten()
    } else if let Some(decimal) = body.strip_prefix('#') {
        decimal
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| decimal.parse::<u32>().ok())
            .flatten()
    } else {
        return match body {
            "lt" => Ok('<'),
            "gt" => Ok('>'),
            "amp" => Ok('&'),
            "apos" => Ok('\''),
            "quot" => Ok('"'),
            _ => Err(format!(
                "unknown entity or malformed reference &{};",
                quoted(body)
            )),
        };
    };
    let Some(code) = code else {
        return Err(format!("malformed character reference &{};", quoted(body)));
    };
    let Some(c) = char::from_u32(code) else {
        // A surrogate or beyond U+10FFFF (roxmltree read these as U+FFFD).
        return Err(format!(
            "the character reference &{}; is not a Unicode scalar value",
            quoted(body)
        ));
    };
    if !is_xml_char(c) {
        return Err(format!(
            "the character reference &{}; is not an XML character",
            quoted(body)
        ));
    }
    Ok(c)
}

/// The XML 1.0 `Char` production (surrogates cannot occur in a `str`).
pub(super) fn is_xml_char(c: char) -> bool {
    if (c as u32) < 0x20 {
        return matches!(c, '\t' | '\n' | '\r');
    }
    !matches!(c, '\u{FFFE}' | '\u{FFFF}')
}

/// Where the first character of `text` that is not an XML character is, if there is one.
/// Every character of a well-formed document is one (in markup, names and character data
/// alike), so the check runs once over the whole input, ahead of the parser, in blocks the
/// compiler can vectorise.
pub(super) fn first_non_xml_char(text: &str) -> Option<usize> {
    // Control characters other than white space, and 0xEF, the first byte of U+FFFE and
    // U+FFFF (EF BF BE, EF BF BF) and of other characters from U+F000 on: rare, and then
    // looked at closer. Branch-free byte arithmetic over fixed-size blocks, which the
    // compiler turns into vector instructions.
    let suspect = |b: u8| {
        let control = (b < 0x20) & (b != b'\t') & (b != b'\n') & (b != b'\r');
        u8::from(control | (b == 0xEF))
    };
    let mut blocks = text.as_bytes().chunks_exact(64);
    let clean = blocks
        .by_ref()
        .all(|block| block.iter().fold(0, |any, &b| any | suspect(b)) == 0)
        && blocks.remainder().iter().all(|&b| suspect(b) == 0);
    if clean {
        return None;
    }
    text.char_indices()
        .find(|(_, c)| !is_xml_char(*c))
        .map(|(at, _)| at)
}

/// The XML declaration (`content` starts with `xml `): version, then optional encoding and
/// standalone pseudo-attributes, whitespace-separated (XML 1.0, 2.8). The values are not
/// checked (the encoding was settled from the bytes).
fn declaration(content: &str) -> Result<(), String> {
    fn pseudo_attribute(rest: &str) -> Result<&str, String> {
        let name_len = rest
            .bytes()
            .position(|b| b == b'=' || is_space(b))
            .unwrap_or(rest.len());
        let (name, after) = rest.split_at(name_len);
        split_qname(name)?;
        let Some(after) = skip_space(after).strip_prefix('=') else {
            return Err("malformed XML declaration".into());
        };
        let after = skip_space(after);
        let quote = match after.chars().next() {
            Some(q @ ('"' | '\'')) => q,
            _ => return Err("malformed XML declaration".into()),
        };
        match after.get(1..).unwrap_or_default().split_once(quote) {
            Some((value, tail)) if !value.contains('<') => Ok(tail),
            _ => Err("malformed XML declaration".into()),
        }
    }
    // Whitespace, required between the parts but not before the end.
    fn separator(rest: &str) -> Result<&str, String> {
        let trimmed = skip_space(rest);
        if trimmed.len() == rest.len() && !rest.is_empty() {
            return Err("malformed XML declaration".into());
        }
        Ok(trimmed)
    }
    let rest = separator(content.get(3..).unwrap_or_default())?;
    if !rest.starts_with("version") {
        return Err("the XML declaration has no version".into());
    }
    let mut rest = separator(pseudo_attribute(rest)?)?;
    if rest.starts_with("encoding") {
        rest = separator(pseudo_attribute(rest)?)?;
    }
    if rest.starts_with("standalone") {
        rest = skip_space(pseudo_attribute(rest)?);
    }
    if !rest.is_empty() {
        return Err("malformed XML declaration".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Character data

/// Appends character data as the application sees it: a `\r\n` or lone `\r` as written is a
/// `\n` (XML 1.0, 2.11); characters from references are taken as they are.
pub(super) fn push_piece<'i>(text: &mut Cow<'i, str>, piece: Piece<'i>) {
    match piece {
        Piece::Raw(s) | Piece::CData(s) if text.is_empty() && !s.contains('\r') => {
            *text = Cow::Borrowed(s);
        }
        Piece::Raw(s) | Piece::CData(s) => push_text(text.to_mut(), s),
        Piece::Char(c) => text.to_mut().push(c),
    }
}

pub(super) fn push_text(out: &mut String, s: &str) {
    if !s.contains('\r') {
        out.push_str(s);
        return;
    }
    let mut rest = s;
    while let Some((line, tail)) = rest.split_once('\r') {
        out.push_str(line);
        out.push('\n');
        rest = tail.strip_prefix('\n').unwrap_or(tail);
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`scan_value`] as its first version was: a search for the quote, then the classes of
    /// every byte before it.
    fn reference_scan(body: &[u8], quote: u8) -> Option<(usize, u8)> {
        let end = body.iter().position(|&b| b == quote)?;
        let classes = body.get(..end)?.iter().fold(0u8, |all, &b| all | class(b));
        Some((end, classes & (LT | SPECIAL)))
    }

    proptest::proptest! {
        #[test]
        fn scan_value_finds_the_quote_and_the_special_bytes(
            body in proptest::collection::vec(
                proptest::sample::select(b"ab\"'<&\t\n\r -\x7f\x80\xef\x1f\x21\x3b\x3d".to_vec()),
                0..40,
            ),
            double in proptest::bool::ANY,
        ) {
            let quote = if double { b'"' } else { b'\'' };
            let found = scan_value(&body, quote).map(|(end, c)| (end, c & (LT | SPECIAL)));
            proptest::prop_assert_eq!(found, reference_scan(&body, quote));
        }
    }
}
