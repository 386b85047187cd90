#include "ui/markdown.h"

#include <QFontDatabase>
#include <QTextBlock>
#include <QTextCursor>
#include <QTextDocument>

QString markdownToHtml(const QString &markdown, const QPalette &palette) {
    QTextDocument doc;
    doc.setMarkdown(markdown, QTextDocument::MarkdownDialectGitHub);
    const QColor base = palette.color(QPalette::Base);
    const QColor text = palette.color(QPalette::Text);
    // A tint halfway to a light grey reads as "code" in both themes.
    QColor codeBg = base.lightness() > 128 ? base.darker(108) : base.lighter(140);
    const QFont mono = QFontDatabase::systemFont(QFontDatabase::FixedFont);
    QTextCursor cursor(&doc);
    for (QTextBlock b = doc.begin(); b.isValid(); b = b.next()) {
        const bool codeBlock = b.blockFormat().hasProperty(QTextFormat::BlockCodeFence) ||
                               b.blockFormat().nonBreakableLines();
        if (codeBlock) {
            cursor.setPosition(b.position());
            QTextBlockFormat bf;
            bf.setBackground(codeBg);
            bf.setLeftMargin(6);
            bf.setRightMargin(6);
            cursor.mergeBlockFormat(bf);
        }
        for (auto it = b.begin(); !it.atEnd(); ++it) {
            const QTextFragment f = it.fragment();
            if (!f.isValid()) continue;
            const QTextCharFormat cf = f.charFormat();
            if (codeBlock || cf.fontFixedPitch()) {
                cursor.setPosition(f.position());
                cursor.setPosition(f.position() + f.length(), QTextCursor::KeepAnchor);
                QTextCharFormat code;
                code.setFontFamilies({mono.family()});
                code.setBackground(codeBg);
                code.setForeground(text);
                cursor.mergeCharFormat(code);
            }
        }
    }
    return doc.toHtml();
}
