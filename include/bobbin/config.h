// bobbin/config.h
//
// Build-wide macros for bobbin's public headers. The library is compiled with
// hidden symbol visibility; BOBBIN_API marks the symbols that form its ABI.
#ifndef BOBBIN_CONFIG_H_
#define BOBBIN_CONFIG_H_

#if defined(BOBBIN_BUILDING_LIBRARY)
#define BOBBIN_API __attribute__((visibility("default")))
#else
#define BOBBIN_API
#endif

#endif  // BOBBIN_CONFIG_H_
