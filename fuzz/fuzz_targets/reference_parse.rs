//! `Reference::parse` on any string a client could send as an image name (pull, tag,
//! create). Beyond not panicking, a reference that parses must print to forms that parse
//! back to itself (the store keys images by those strings), and its repository path must
//! never carry something a filesystem or URL path would read as structure.

#![no_main]

use berth_image::Reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(r) = Reference::parse(s) else {
        return;
    };
    let printed = r.to_string();
    match Reference::parse(&printed) {
        Ok(back) => assert_eq!(back, r, "{s:?} printed as {printed:?} parses to another"),
        Err(e) => panic!("{s:?} printed as {printed:?} does not parse back: {e}"),
    }
    let familiar = r.familiar();
    match Reference::parse(&familiar) {
        Ok(back) => assert_eq!(back, r, "{s:?} familiar {familiar:?} parses to another"),
        Err(e) => panic!("{s:?} familiar {familiar:?} does not parse back: {e}"),
    }
    for component in r.path().split('/') {
        assert!(
            !component.is_empty() && component != "." && component != "..",
            "{s:?} has path component {component:?}"
        );
    }
    assert!(!r.path().contains('\0') && !r.domain().contains(['/', '\0']));
    if let Some(tag) = r.tag() {
        assert!(
            !tag.contains(['/', '\0', ':', '@']),
            "{s:?} has tag {tag:?}"
        );
    }
    let _ = r.manifest_ref();
    let _ = r.registry_host();
});
