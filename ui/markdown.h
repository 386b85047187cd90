#pragma once
// Markdown (GitHub dialect) to the rich text a QLabel shows, with code blocks and inline code
// on a tinted background taken from the palette so both light and dark themes read well.
#include <QPalette>
#include <QString>

QString markdownToHtml(const QString &markdown, const QPalette &palette);
