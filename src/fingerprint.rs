//! A state written out as bytes and hashed, for a search that caches
//! states: what two runs must agree on to go on alike, in a canonical form.
//!
//! Values are written through their `Serialize` (every field of every
//! struct and the variant of every enum, each self-delimiting, so two
//! different values never write the same bytes: a struct's and an enum's
//! name, a field's presence (a field a `skip_serializing_if` left out
//! writes a mark of its own), the length of every string, an end to every
//! list and map). Two kinds of numbers are written otherwise, picked by the
//! name of the field that holds them, directly (not inside an `Option` or a
//! newtype):
//! - **logical times**: a field whose name ends in `seq`, and every number
//!   given to [`Fingerprint::seq`]. Each is written as its rank among all
//!   the logical times of the fingerprint (ties share a rank): nothing
//!   reads them but to compare them with one another, so two states whose
//!   logical times stand in the same order go on alike;
//! - **kept** times: a field whose name is one of [`Fingerprint::new`]'s
//!   `kept` names is written without its value (a time nothing after
//!   will compare; the caller says which, and why).
//!
//! The bytes are hashed to 128 bits (XXH3-128): two different states share
//! a hash only by a collision, about 2^-128 for a pair.

use std::fmt;

use serde::ser::{self, Serialize};
use xxhash_rust::xxh3::xxh3_128;

/// A fingerprint being written: bytes, and where its logical times are.
#[derive(Debug, Clone)]
pub struct Fingerprint {
    bytes: Vec<u8>,
    /// Each logical time: where its 8 bytes are, and its value.
    seqs: Vec<(usize, u64)>,
    /// The fields whose values are left out.
    kept: &'static [&'static str],
    /// What the number about to be written is (its field's name says).
    next: Number,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Number {
    Plain,
    Seq,
    Kept,
}

// One byte before each value says what it is.
const BOOL: u8 = 1;
const INT: u8 = 2;
const SEQ: u8 = 3;
const KEPT: u8 = 4;
const FLOAT: u8 = 5;
const CHAR: u8 = 6;
const STR: u8 = 7;
const BYTES: u8 = 8;
const NONE: u8 = 9;
const SOME: u8 = 10;
const UNIT: u8 = 11;
const NEWTYPE: u8 = 12;
const VARIANT: u8 = 13;
const LIST: u8 = 14;
const TUPLE: u8 = 15;
const MAP: u8 = 16;
const STRUCT: u8 = 17;
// Inside a list, a map or a struct: one more item, a field left out, the end.
const MORE: u8 = 1;
const SKIPPED: u8 = 2;
const END: u8 = 0;

impl Fingerprint {
    /// An empty fingerprint, leaving out the values of the fields named in
    /// `kept`.
    pub fn new(kept: &'static [&'static str]) -> Fingerprint {
        Fingerprint { bytes: Vec::with_capacity(1024), seqs: Vec::new(), kept, next: Number::Plain }
    }

    /// Empties it.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.seqs.clear();
        self.next = Number::Plain;
    }

    /// Writes `value`.
    pub fn add<T: Serialize + ?Sized>(&mut self, value: &T) {
        value.serialize(&mut *self).unwrap_or_else(|e| panic!("a state's value could not be written: {e}"));
    }

    /// Writes a logical time (by its rank: see the module).
    pub fn seq(&mut self, seq: u64) {
        self.bytes.push(SEQ);
        self.seqs.push((self.bytes.len(), seq));
        self.bytes.extend_from_slice(&[0; 8]);
    }

    /// Writes what `other` holds, its logical times ranked with these.
    pub fn append(&mut self, other: &Fingerprint) {
        let at = self.bytes.len();
        self.bytes.extend_from_slice(&other.bytes);
        self.seqs.extend(other.seqs.iter().map(|&(offset, seq)| (at + offset, seq)));
    }

    /// The hash of what it holds, every logical time written as its rank.
    pub fn finish(mut self) -> u128 {
        let mut values: Vec<u64> = self.seqs.iter().map(|&(_, seq)| seq).collect();
        values.sort_unstable();
        values.dedup();
        for &(offset, seq) in &self.seqs {
            let rank = values.partition_point(|&v| v < seq) as u64;
            self.bytes[offset..offset + 8].copy_from_slice(&rank.to_le_bytes());
        }
        xxh3_128(&self.bytes)
    }

    fn name(&mut self, name: &str) {
        self.bytes.push(name.len() as u8);
        self.bytes.extend_from_slice(name.as_bytes());
    }

    fn length(&mut self, len: usize) {
        self.bytes.extend_from_slice(&(len as u64).to_le_bytes());
    }

    /// A value other than a number: the field's name no longer applies.
    fn other(&mut self, tag: u8) {
        self.next = Number::Plain;
        self.bytes.push(tag);
    }

    fn unsigned(&mut self, value: u64) {
        match std::mem::replace(&mut self.next, Number::Plain) {
            Number::Plain => {
                self.bytes.push(INT);
                self.bytes.extend_from_slice(&value.to_le_bytes());
            }
            Number::Seq => self.seq(value),
            Number::Kept => self.bytes.push(KEPT),
        }
    }

    fn signed(&mut self, value: i64) {
        match u64::try_from(value) {
            Ok(value) => self.unsigned(value),
            Err(_) => {
                // Negative: never a time (the text it stands for had no digits first).
                self.other(INT);
                self.bytes.extend_from_slice(&value.to_le_bytes());
                self.bytes.push(1);
            }
        }
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Error> {
        self.bytes.push(MORE);
        self.next = if key.ends_with("seq") {
            Number::Seq
        } else if self.kept.contains(&key) {
            Number::Kept
        } else {
            Number::Plain
        };
        value.serialize(&mut *self)?;
        self.next = Number::Plain;
        Ok(())
    }

    fn item<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.bytes.push(MORE);
        self.next = Number::Plain;
        value.serialize(&mut *self)
    }
}

/// A value `Serialize` refused to write (none of a state's does).
#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Error {
        Error(msg.to_string())
    }
}

impl ser::Serializer for &mut Fingerprint {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.other(BOOL);
        self.bytes.push(v as u8);
        Ok(())
    }

    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.signed(v.into());
        Ok(())
    }

    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.signed(v.into());
        Ok(())
    }

    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.signed(v.into());
        Ok(())
    }

    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        self.signed(v);
        Ok(())
    }

    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.unsigned(v.into());
        Ok(())
    }

    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.unsigned(v.into());
        Ok(())
    }

    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.unsigned(v.into());
        Ok(())
    }

    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        self.unsigned(v);
        Ok(())
    }

    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        self.serialize_f64(v.into())
    }

    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        self.other(FLOAT);
        self.bytes.extend_from_slice(&v.to_bits().to_le_bytes());
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.other(CHAR);
        self.bytes.extend_from_slice(&u32::from(v).to_le_bytes());
        Ok(())
    }

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        self.other(STR);
        self.length(v.len());
        self.bytes.extend_from_slice(v.as_bytes());
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        self.other(BYTES);
        self.length(v.len());
        self.bytes.extend_from_slice(v);
        Ok(())
    }

    fn serialize_none(self) -> Result<(), Error> {
        self.other(NONE);
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        self.other(SOME);
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Error> {
        self.other(UNIT);
        Ok(())
    }

    fn serialize_unit_struct(self, name: &'static str) -> Result<(), Error> {
        self.other(UNIT);
        self.name(name);
        Ok(())
    }

    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        _variant: &'static str,
    ) -> Result<(), Error> {
        self.other(VARIANT);
        self.name(name);
        self.bytes.extend_from_slice(&index.to_le_bytes());
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.other(NEWTYPE);
        self.name(name);
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.serialize_unit_variant(name, index, variant)?;
        value.serialize(self)
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self, Error> {
        self.other(LIST);
        Ok(self)
    }

    fn serialize_tuple(self, len: usize) -> Result<Self, Error> {
        self.other(TUPLE);
        self.length(len);
        Ok(self)
    }

    fn serialize_tuple_struct(self, name: &'static str, len: usize) -> Result<Self, Error> {
        self.other(TUPLE);
        self.name(name);
        self.length(len);
        Ok(self)
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self, Error> {
        self.serialize_unit_variant(name, index, variant)?;
        self.length(len);
        Ok(self)
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self, Error> {
        self.other(MAP);
        Ok(self)
    }

    fn serialize_struct(self, name: &'static str, _len: usize) -> Result<Self, Error> {
        self.other(STRUCT);
        self.name(name);
        Ok(self)
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self, Error> {
        self.serialize_unit_variant(name, index, variant)?;
        self.bytes.push(STRUCT);
        Ok(self)
    }
}

/// The compound writers: each item after a mark, and an end.
macro_rules! items {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for &mut Fingerprint {
            type Ok = ();
            type Error = Error;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
                self.item(value)
            }

            fn end(self) -> Result<(), Error> {
                self.bytes.push(END);
                Ok(())
            }
        }
    )*};
}

items!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for &mut Fingerprint {
    type Ok = ();
    type Error = Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.item(key)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.next = Number::Plain;
        value.serialize(&mut **self)
    }

    fn end(self) -> Result<(), Error> {
        self.bytes.push(END);
        Ok(())
    }
}

/// A struct's fields, and a struct variant's: each named (its name says
/// what its number is), or left out.
macro_rules! fields {
    ($($trait:ident),*) => {$(
        impl ser::$trait for &mut Fingerprint {
            type Ok = ();
            type Error = Error;

            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), Error> {
                self.field(key, value)
            }

            fn skip_field(&mut self, key: &'static str) -> Result<(), Error> {
                self.bytes.push(SKIPPED);
                self.name(key);
                Ok(())
            }

            fn end(self) -> Result<(), Error> {
                self.bytes.push(END);
                Ok(())
            }
        }
    )*};
}

fields!(SerializeStruct, SerializeStructVariant);

#[cfg(test)]
mod tests {
    use serde::Serialize;

    use super::Fingerprint;

    #[derive(Serialize)]
    struct Stamp {
        seq: u64,
        time: u64,
    }

    #[derive(Serialize)]
    struct Row {
        created_at: u64,
        created_at_ms: u64,
        xcreated_at: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        other: Option<u64>,
    }

    fn hash(kept: &'static [&'static str], write: impl FnOnce(&mut Fingerprint)) -> u128 {
        let mut fingerprint = Fingerprint::new(kept);
        write(&mut fingerprint);
        fingerprint.finish()
    }

    fn state(a: u64, b: u64, now: u64) -> u128 {
        hash(&[], |f| {
            f.add(&Stamp { seq: a, time: 5 });
            f.add(&[Stamp { seq: b, time: 5 }]);
            f.seq(now);
        })
    }

    #[test]
    fn logical_times_count_by_their_order_and_nothing_else_is_changed() {
        // The same order, other values: the same state.
        assert_eq!(state(3, 7, 9), state(10, 40, 41));
        // A tie is not an order.
        assert_ne!(state(3, 3, 9), state(3, 4, 9));
        // Another order.
        assert_ne!(state(3, 7, 9), state(7, 3, 9));
        // Everything but logical times counts as it is.
        assert_ne!(
            hash(&[], |f| f.add(&Stamp { seq: 1, time: 5 })),
            hash(&[], |f| f.add(&Stamp { seq: 1, time: 6 }))
        );
        // A logical time is a field's only when the number is the field's.
        assert_ne!(hash(&[], |f| f.add(&(1u64, 5u64))), hash(&[], |f| f.add(&(2u64, 5u64))));
        assert_ne!(hash(&[], |f| f.add(&(Some(1u64), 9u64))), hash(&[], |f| f.add(&(Some(2u64), 9u64))));
    }

    #[test]
    fn appended_parts_rank_with_the_rest() {
        let part = |seq: u64| {
            let mut part = Fingerprint::new(&[]);
            part.add(&"heard");
            part.seq(seq);
            part
        };
        let whole = |a: u64, b: u64| {
            hash(&[], |f| {
                f.seq(a);
                f.append(&part(b));
            })
        };
        assert_eq!(
            whole(3, 9),
            hash(&[], |f| {
                f.seq(3);
                f.add(&"heard");
                f.seq(9);
            })
        );
        assert_eq!(whole(3, 9), whole(1, 2));
        assert_ne!(whole(3, 9), whole(9, 3));
        let mut cleared = part(4);
        cleared.clear();
        // Cleared, it is a new one: no bytes, no logical times.
        assert_eq!(cleared.finish(), Fingerprint::new(&[]).finish());
    }

    #[test]
    fn a_kept_time_is_left_out_and_only_a_field_of_that_name() {
        let row = |created_at, created_at_ms, xcreated_at| Row {
            created_at,
            created_at_ms,
            xcreated_at,
            note: None,
            other: None,
        };
        let kept = |row: Row| hash(&["created_at"], |f| f.add(&row));
        assert_eq!(kept(row(0, 0, 0)), kept(row(86_401_000, 0, 0)));
        assert_ne!(kept(row(0, 0, 0)), kept(row(0, 1, 0)));
        assert_ne!(kept(row(0, 0, 0)), kept(row(0, 0, 1)));
        // Unless kept, it counts.
        assert_ne!(hash(&[], |f| f.add(&row(0, 0, 0))), hash(&[], |f| f.add(&row(1, 0, 0))));
    }

    #[test]
    fn different_values_write_different_bytes() {
        // A field left out is not another one left out.
        let with = |note, other| {
            hash(&[], |f| f.add(&Row { created_at: 0, created_at_ms: 0, xcreated_at: 0, note, other }))
        };
        assert_ne!(with(Some(1), None), with(None, Some(1)));
        assert_ne!(with(None, None), with(Some(0), None));
        // Strings and lists end where they end.
        assert_ne!(hash(&[], |f| f.add(&("ab", "c"))), hash(&[], |f| f.add(&("a", "bc"))));
        assert_ne!(
            hash(&[], |f| f.add(&(vec![1u64, 2], vec![3u64]))),
            hash(&[], |f| f.add(&(vec![1u64], vec![2u64, 3])))
        );
        // Two types written alike but for their names.
        #[derive(Serialize)]
        struct A {
            v: u64,
        }
        #[derive(Serialize)]
        struct B {
            v: u64,
        }
        #[derive(Serialize)]
        #[serde(untagged)]
        enum Either {
            A(A),
            B(B),
        }
        assert_ne!(
            hash(&[], |f| f.add(&Either::A(A { v: 1 }))),
            hash(&[], |f| f.add(&Either::B(B { v: 1 })))
        );
    }
}
