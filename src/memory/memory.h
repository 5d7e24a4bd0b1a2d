/* memory/memory.h -- what the memory broker knows of the memory backend,
 * never installed.
 *
 * The pair is colocated (<gtask/extend.h>, "Colocation"): the broker
 * recognises a memory backend by its table (gtask_backend_impl) and, with the
 * backend's impl as state, calls that table's pending, store and reset while
 * it holds its own mutex, so that a queue change and the state change it
 * implies are one step for anyone who looks through either.
 *
 * Lock order: broker mutex, then backend mutex.  The backend never calls the
 * broker, so the order cannot be reversed. */
#ifndef GTASK_MEMORY_H
#define GTASK_MEMORY_H

#include <gtask/extend.h>

extern const gtask_backend_ops gtask__memory_backend_ops;

#endif /* GTASK_MEMORY_H */
