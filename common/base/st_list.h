/*
 * st_list — intrusive doubly-linked lists, for the few places that keep live
 * objects (server connections) in a list they unlink from in O(1).
 *
 * The element type has `prev` and `next` pointers of its own type; the list
 * is a head pointer. Macros, so each list stays typed; no allocation.
 */
#ifndef ST_LIST_H
#define ST_LIST_H

#include <stddef.h>

/* Put n at the front of the list whose head pointer is `head`. */
#define ST_LIST_PUSH(head, n)                                                                      \
    do {                                                                                           \
        (n)->prev = NULL;                                                                          \
        (n)->next = (head);                                                                        \
        if (head)                                                                                  \
            (head)->prev = (n);                                                                    \
        (head) = (n);                                                                              \
    } while (0)

/* Take n out of the list whose head pointer is `head`. */
#define ST_LIST_REMOVE(head, n)                                                                    \
    do {                                                                                           \
        if ((n)->prev)                                                                             \
            (n)->prev->next = (n)->next;                                                           \
        else                                                                                       \
            (head) = (n)->next;                                                                    \
        if ((n)->next)                                                                             \
            (n)->next->prev = (n)->prev;                                                           \
        (n)->prev = (n)->next = NULL;                                                              \
    } while (0)

#endif
