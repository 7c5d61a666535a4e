//! How every module of the data path gets at a map of the loaded object
//! and reads the result of an operation on it: a failure as the error that
//! names the map, a missing key as an answer rather than a failure, an
//! address as the maps hold it.

use std::net::Ipv4Addr;

use aya::{
    maps::{Map, MapError},
    sys::SyscallError,
};

use super::{Dataplane, DataplaneError};

impl Dataplane {
    /// The object's map `name` as the aya type `T` (e.g.
    /// `HashMap<&MapData, K, V>`), for reading.
    pub(super) fn object_map<'a, T>(&'a self, name: &'static str) -> Result<T, DataplaneError>
    where
        T: TryFrom<&'a Map, Error = MapError>,
    {
        let map = self.ebpf.map(name).ok_or_else(|| missing_map(name))?;
        T::try_from(map).map_err(map_error(name))
    }

    /// The object's map `name` as the aya type `T`, for writing.
    pub(super) fn object_map_mut<'a, T>(
        &'a mut self,
        name: &'static str,
    ) -> Result<T, DataplaneError>
    where
        T: TryFrom<&'a mut Map, Error = MapError>,
    {
        let map = self.ebpf.map_mut(name).ok_or_else(|| missing_map(name))?;
        T::try_from(map).map_err(map_error(name))
    }
}

/// The error for a failed operation on the map `map`, for `map_err`.
pub(super) fn map_error(map: &'static str) -> impl Fn(MapError) -> DataplaneError {
    move |source| DataplaneError::Map {
        map,
        source: Box::new(source),
    }
}

/// The error for a map the embedded object does not have.
pub(super) fn missing_map(name: &'static str) -> DataplaneError {
    DataplaneError::MissingInObject { kind: "map", name }
}

/// The errno of a failed map syscall, to tell "already there"/"not there"
/// from real failures without matching on strings.
pub(super) fn errno(e: &MapError) -> Option<i32> {
    match e {
        MapError::SyscallError(SyscallError { io_error, .. }) => io_error.raw_os_error(),
        _ => None,
    }
}

/// Whether `e` says that the key is not in the map.
pub(super) fn missing(e: &MapError) -> bool {
    matches!(e, MapError::KeyNotFound) || errno(e) == Some(libc::ENOENT)
}

/// `Ok(None)` for a missing key instead of an error.
pub(super) fn found<V>(result: Result<V, MapError>) -> Result<Option<V>, MapError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if missing(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `Ok(())` for a key that was already absent.
pub(super) fn removed(result: Result<(), MapError>) -> Result<(), MapError> {
    match result {
        Err(e) if missing(&e) => Ok(()),
        other => other,
    }
}

/// An address as the maps hold it (`netd_common::ipv4_be`).
pub(super) fn addr(ip_be: u32) -> Ipv4Addr {
    Ipv4Addr::from(ip_be.to_ne_bytes())
}
